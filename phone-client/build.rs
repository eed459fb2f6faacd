//! Compiles the companion's Slint window (`ui/companion.slint`) when the `gui` feature
//! is on; without it there is nothing to build.

fn main() {
    #[cfg(feature = "gui")]
    slint_build::compile("ui/companion.slint").expect("ui/companion.slint compiles");
}
