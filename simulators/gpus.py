"""GPU models the facility physics knows: power envelope and thermal limits per accelerator.

Powers are board powers at the reference junction temperature ``PhysicsParams.leak_ref_temp_c``; leakage
above or below it is added by :func:`simulators.physics.gpu_power_and_temp`. Typical values from vendor data
sheets (TDP / max board power) and published idle draws; throttle limits sit in the high 80s °C (DESIGN.md §1).

``power_limit_w`` is the board power limit that the GPU's power controller holds by lowering clocks (the enforced
limit ``nvidia-smi -q -d POWER`` reports). Each model's default is the vendor's maximum board power, equal to its
``tdp_w``; a site scales every model's limit with ``simulation.physics.power_limit_frac``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aidc.errors import ConfigError


@dataclass(frozen=True, slots=True)
class GpuModel:
    """Power envelope and limits of one accelerator model."""

    name: str
    tdp_w: float  # board power at full utilisation and the reference temperature
    idle_w: float  # board power when idle (clocks parked, memory refreshed)
    min_w: float  # lowest power the throttling controller can force (clock floor)
    throttle_c: float  # junction temperature above which the GPU caps its power
    # Everything else in a fully loaded rack per GPU: CPUs, NVLink switches, NICs, fans, power-shelf losses.
    # Used only when the rack's rated power does not say otherwise (see :func:`other_rack_power_w`).
    other_per_gpu_w: float
    power_limit_w: float  # board power limit the power controller holds by lowering clocks (W)


GPU_MODELS: dict[str, GpuModel] = {
    m.name: m
    for m in (
        # power_limit_w: the vendors' maximum board power, from their data sheets: GB200 NVL72 and GB300 NVL72
        # (1,200 W and 1,400 W per Blackwell GPU as configured in NVL72), HGX B200 (1,000 W), H100 / H200 SXM
        # ("max thermal design power up to 700 W, configurable"), A100 SXM 80 GB (400 W).
        # NVIDIA GB200 NVL72: 72 Blackwell GPUs at ~1.2 kW plus 36 Grace CPUs and 9 NVLink switch trays, ~132 kW.
        GpuModel(
            "GB200",
            tdp_w=1200.0,
            idle_w=160.0,
            min_w=300.0,
            throttle_c=87.0,
            other_per_gpu_w=630.0,
            power_limit_w=1200.0,
        ),
        GpuModel(
            "GB300",
            tdp_w=1400.0,
            idle_w=180.0,
            min_w=350.0,
            throttle_c=87.0,
            other_per_gpu_w=650.0,
            power_limit_w=1400.0,
        ),
        # HGX B200: 8 GPUs at 1 kW per 14.3 kW server.
        GpuModel(
            "B200",
            tdp_w=1000.0,
            idle_w=140.0,
            min_w=250.0,
            throttle_c=87.0,
            other_per_gpu_w=790.0,
            power_limit_w=1000.0,
        ),
        # HGX H100 SXM: 8 x 700 W in a 10.2 kW server.
        GpuModel(
            "H100", tdp_w=700.0, idle_w=70.0, min_w=200.0, throttle_c=87.0, other_per_gpu_w=575.0, power_limit_w=700.0
        ),
        GpuModel(
            "H200", tdp_w=700.0, idle_w=75.0, min_w=200.0, throttle_c=87.0, other_per_gpu_w=575.0, power_limit_w=700.0
        ),
        # HGX A100 SXM 80 GB: 8 x 400 W in a 6.5 kW server.
        GpuModel(
            "A100", tdp_w=400.0, idle_w=50.0, min_w=100.0, throttle_c=85.0, other_per_gpu_w=410.0, power_limit_w=400.0
        ),
    )
}


def gpu_model(name: str) -> GpuModel:
    """The GPU model called ``name`` (case-insensitive); ConfigError lists the known ones."""
    for key, model in GPU_MODELS.items():
        if key.lower() == name.lower():
            return model
    raise ConfigError(f"gpu_model: {name!r} is not a known GPU model (known: {', '.join(GPU_MODELS)})")


def other_rack_power_w(model: GpuModel, gpus: int, rated_kw: float) -> float:
    """Full-load power of a rack's non-GPU equipment so that a fully loaded rack draws its rated power.

    When the rated power leaves less than a tenth of the model's typical share (a mis-sized rating), the
    typical share per GPU is used instead, so the rack still has CPUs and switches to cool.
    """
    rest = rated_kw * 1000.0 - gpus * model.tdp_w
    typical = gpus * model.other_per_gpu_w
    return rest if rest >= 0.1 * typical else typical
