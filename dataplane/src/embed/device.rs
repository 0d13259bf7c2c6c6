//! Which devices run the embedding model: the configured selection resolved against the CUDA
//! devices the driver lists, with the reason whenever the CPU is used instead of a GPU.

use std::fmt;

use ragplane_config::DeviceSelection;
use ragplane_gpu::{GpuDevice, GpuError};

use super::{EmbedError, Result};

/// A device one inference session runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    Cpu,
    /// ONNX Runtime's CUDA execution provider on one GPU.
    Cuda {
        /// CUDA ordinal.
        ordinal: usize,
        /// Name the driver reports.
        name: String,
    },
}

impl Device {
    /// Short label used in metrics and logs: `cpu` or `cuda:N`.
    pub fn label(&self) -> String {
        match self {
            Self::Cpu => "cpu".into(),
            Self::Cuda { ordinal, .. } => format!("cuda:{ordinal}"),
        }
    }

    /// Whether this is a GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Self::Cuda { .. })
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda { ordinal, name } => write!(f, "cuda:{ordinal} ({name})"),
        }
    }
}

/// The devices to load sessions on, and why the CPU was chosen when it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    /// At least one device.
    pub devices: Vec<Device>,
    /// Set when GPUs were wanted (or possible) but the CPU is used: the reason, for logs and
    /// `/info`.
    pub cpu_reason: Option<String>,
}

impl DevicePlan {
    fn cpu(reason: impl Into<String>) -> Self {
        Self {
            devices: vec![Device::Cpu],
            cpu_reason: Some(reason.into()),
        }
    }
}

/// Resolves `selection` against what the CUDA driver reports.
///
/// Without a driver or a matching GPU the plan is the CPU with the reason, unless
/// `require_gpu`, in which case it is an error.
pub fn plan_devices(selection: &DeviceSelection, require_gpu: bool) -> Result<DevicePlan> {
    plan_with(selection, require_gpu, ragplane_gpu::discover)
}

fn plan_with(
    selection: &DeviceSelection,
    require_gpu: bool,
    discover: impl FnOnce() -> Result<Vec<GpuDevice>, GpuError>,
) -> Result<DevicePlan> {
    let plan = match selection {
        DeviceSelection::Cpu => DevicePlan {
            devices: vec![Device::Cpu],
            cpu_reason: Some("devices = \"cpu\" was configured".into()),
        },
        DeviceSelection::Auto => match discover() {
            Ok(gpus) if !gpus.is_empty() => DevicePlan {
                devices: gpus.into_iter().map(to_device).collect(),
                cpu_reason: None,
            },
            Ok(_) => DevicePlan::cpu("the CUDA driver lists no GPU"),
            Err(e) => DevicePlan::cpu(e.to_string()),
        },
        DeviceSelection::Gpus(wanted) => match discover() {
            Ok(gpus) => {
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|w| !gpus.iter().any(|g| g.ordinal == **w))
                    .map(ToString::to_string)
                    .collect();
                if missing.is_empty() {
                    DevicePlan {
                        devices: gpus
                            .into_iter()
                            .filter(|g| wanted.contains(&g.ordinal))
                            .map(to_device)
                            .collect(),
                        cpu_reason: None,
                    }
                } else {
                    DevicePlan::cpu(format!(
                        "CUDA device(s) {} not found; the driver lists {}",
                        missing.join(","),
                        gpus.len()
                    ))
                }
            }
            Err(e) => DevicePlan::cpu(e.to_string()),
        },
    };
    if require_gpu && !plan.devices.iter().any(Device::is_gpu) {
        return Err(EmbedError::Load(format!(
            "failed to find a GPU and require_gpu is set: {}",
            plan.cpu_reason.as_deref().unwrap_or("no GPU")
        )));
    }
    Ok(plan)
}

fn to_device(g: GpuDevice) -> Device {
    Device::Cuda {
        ordinal: g.ordinal,
        name: g.name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100(ordinal: usize) -> GpuDevice {
        GpuDevice {
            ordinal,
            name: "NVIDIA H100".into(),
            total_memory_bytes: 80 << 30,
        }
    }

    #[test]
    fn auto_uses_every_gpu_and_falls_back_to_the_cpu_with_a_reason() {
        let p = plan_with(&DeviceSelection::Auto, false, || Ok(vec![h100(0), h100(1)])).unwrap();
        assert_eq!(p.devices.len(), 2);
        assert_eq!(p.cpu_reason, None);
        let p = plan_with(&DeviceSelection::Auto, false, || {
            Err(GpuError::DriverMissing)
        })
        .unwrap();
        assert_eq!(p.devices, vec![Device::Cpu]);
        assert!(p.cpu_reason.unwrap().contains("libcuda"));
    }

    #[test]
    fn picked_gpus_must_exist_and_require_gpu_refuses_the_cpu() {
        let p = plan_with(&DeviceSelection::Gpus(vec![1]), true, || {
            Ok(vec![h100(0), h100(1)])
        })
        .unwrap();
        assert_eq!(
            p.devices.iter().map(Device::label).collect::<Vec<_>>(),
            ["cuda:1"]
        );
        let p = plan_with(&DeviceSelection::Gpus(vec![3]), false, || Ok(vec![h100(0)])).unwrap();
        assert!(p.cpu_reason.unwrap().contains("3 not found"));
        let e = plan_with(&DeviceSelection::Auto, true, || {
            Err(GpuError::DriverMissing)
        })
        .unwrap_err();
        assert!(e.to_string().contains("require_gpu"), "{e}");
    }

    #[test]
    fn the_real_driver_check_does_not_panic() {
        let p = plan_devices(&DeviceSelection::Auto, false).unwrap();
        assert!(!p.devices.is_empty());
        assert_eq!(p.cpu_reason.is_some(), p.devices == vec![Device::Cpu]);
    }
}
