//! Feeds arbitrary bytes to the policy loader: it must answer with a policy or located errors,
//! never panic, and a policy it accepts must survive a render/load round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openshell_proto::policy::{load, to_yaml};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(loaded) = load(text, "fuzz.yaml") {
        let rendered = to_yaml(&loaded.policy);
        let again = load(&rendered, "rendered.yaml");
        assert!(again.is_ok(), "a valid policy rendered to invalid YAML:\n{rendered}");
    }
});
