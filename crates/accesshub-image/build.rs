// The services' main.rs files are compiled into this binary as modules: `accesshub_image` tells
// them to leave the global allocator to it (one per binary).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(accesshub_image)");
    println!("cargo::rustc-cfg=accesshub_image");
}
