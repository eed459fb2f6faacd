//! Compiles the Slint UI in `ui/` into Rust at build time.

fn main() {
    slint_build::compile("ui/app.slint").expect("the Slint UI in ui/app.slint compiles");
}
