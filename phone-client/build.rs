//! Compiles the companion's Slint window (`ui/companion.slint`) when the `gui` feature
//! is on; without it there is nothing to build. Debug builds keep the element
//! information that lets headless tests read every text on screen.

fn main() {
    #[cfg(feature = "gui")]
    {
        let debug = std::env::var("PROFILE").is_ok_and(|p| p == "debug");
        let config = slint_build::CompilerConfiguration::new().with_debug_info(debug);
        slint_build::compile_with_config("ui/companion.slint", config)
            .expect("ui/companion.slint compiles");
    }
}
