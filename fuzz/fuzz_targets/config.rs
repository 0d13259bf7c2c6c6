//! Fuzzes the configuration loader: any TOML is a configuration or an error, and a loaded
//! configuration's validation answers without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(toml) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = ragplane_config::load::from_toml(toml) {
        let _ = config.validate();
    }
});
