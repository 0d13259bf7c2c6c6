//! CUDA device discovery for the embedding server.
//!
//! The CUDA driver (`libcuda.so`) is loaded at run time through `cudarc`'s dynamic loading, so
//! nothing links CUDA at build time and the same binary runs on machines without a GPU. Calls into
//! a driver that is not there panic inside `cudarc`, so every entry point first checks that the
//! library can be loaded, and reports its absence as an error the caller can fall back from.

use cudarc::driver::result;

/// Why no CUDA device could be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// `libcuda.so` could not be loaded: no NVIDIA driver on this machine or in this container.
    #[error("the CUDA driver library (libcuda.so) is not present")]
    DriverMissing,
    /// The driver is present but a call into it failed.
    #[error("failed to {action}: {message}")]
    Driver {
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        message: String,
    },
}

/// One CUDA device as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    /// The CUDA ordinal (as in `CUDA_VISIBLE_DEVICES` order).
    pub ordinal: usize,
    /// Marketing name, for example `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Total device memory in bytes.
    pub total_memory_bytes: u64,
}

/// Whether the CUDA driver library can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: `is_culib_present` only tries to open the library by name with `dlopen` and closes
    // it again; it runs no library code besides the loader's initialisers, which any CUDA program
    // runs as well.
    #[allow(unsafe_code)]
    unsafe {
        cudarc::driver::sys::is_culib_present()
    }
}

fn driver(action: &'static str) -> impl Fn(result::DriverError) -> GpuError {
    move |e| GpuError::Driver {
        action,
        message: e.to_string(),
    }
}

/// Lists every CUDA device the driver sees, or says why it cannot.
pub fn discover() -> Result<Vec<GpuDevice>, GpuError> {
    if !driver_present() {
        return Err(GpuError::DriverMissing);
    }
    result::init().map_err(driver("initialise the CUDA driver"))?;
    let count = result::device::get_count().map_err(driver("count CUDA devices"))?;
    let mut devices = Vec::new();
    for ordinal in 0..count {
        let dev = result::device::get(ordinal).map_err(driver("open a CUDA device"))?;
        let name = result::device::get_name(dev).map_err(driver("read a CUDA device's name"))?;
        // SAFETY: `dev` was just returned by `cuDeviceGet` for a valid ordinal, as
        // `cuDeviceTotalMem` requires.
        #[allow(unsafe_code)]
        let total = unsafe { result::device::total_mem(dev) }
            .map_err(driver("read a CUDA device's memory size"))?;
        devices.push(GpuDevice {
            ordinal: usize::try_from(ordinal).unwrap_or_default(),
            name,
            total_memory_bytes: total as u64,
        });
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_never_panics_and_agrees_with_the_driver_check() {
        match discover() {
            Err(GpuError::DriverMissing) => assert!(!driver_present()),
            Err(GpuError::Driver { .. }) => assert!(driver_present()),
            Ok(devices) => {
                assert!(driver_present());
                for (i, d) in devices.iter().enumerate() {
                    assert_eq!(d.ordinal, i);
                    assert!(d.total_memory_bytes > 0, "{d:?}");
                }
            }
        }
    }
}
