//! Compiles the gRPC contracts with a vendored protoc, so a fresh machine needs none installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let protos = [
        "proto/openshell/v1/common.proto",
        "proto/openshell/v1/gateway.proto",
        "proto/openshell/v1/supervisor.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure().compile_protos(&protos, &["proto"])?;
    embed_policies()?;
    Ok(())
}

/// Embeds `policies/baseline.yaml` and `policies/presets/*.yaml` so every binary carries the
/// catalog whatever its working directory.
fn embed_policies() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR")?).join("../policies");
    let root = root.canonicalize()?;
    println!("cargo:rerun-if-changed={}", root.display());
    let presets_dir = root.join("presets");
    println!("cargo:rerun-if-changed={}", presets_dir.display());
    let mut presets: Vec<_> = std::fs::read_dir(&presets_dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    presets.sort();
    let mut out = String::from(
        "/// Built-in presets: (name, YAML text), sorted by name.\npub const PRESETS: &[(&str, &str)] = &[\n",
    );
    for p in &presets {
        println!("cargo:rerun-if-changed={}", p.display());
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("bad preset file name")?;
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            p.display().to_string()
        ));
    }
    out.push_str("];\n");
    let baseline = root.join("baseline.yaml");
    println!("cargo:rerun-if-changed={}", baseline.display());
    out.push_str(&format!(
        "/// The policy a new sandbox gets.\npub const BASELINE: &str = include_str!({:?});\n",
        baseline.display().to_string()
    ));
    std::fs::write(
        std::path::Path::new(&std::env::var("OUT_DIR")?).join("catalog.rs"),
        out,
    )?;
    Ok(())
}
