"""The static layout of a simulated facility: racks, GPUs, CDUs and design quantities, as numpy arrays.

Built once from the site file and the physics parameters; :class:`simulators.facility.Facility` adds the state
and the dynamics. GPUs are flattened over racks (``_gpu_rack`` maps each GPU to its rack, ``rack_offsets`` marks
where each rack's GPUs start) so every per-GPU equation is one vectorised numpy expression.
"""

from __future__ import annotations

import math

import numpy as np

from aidc.config import CduConfig, Site
from simulators import physics as ph
from simulators.gpus import gpu_model, other_rack_power_w
from simulators.heat_rejection import CrahCoil, FreeCooler
from simulators.physics import PhysicsParams

AIR_SUPPLY_C = 24.0  # CRAH supply air, inside the ASHRAE recommended 18-27 °C


class Layout:
    """Racks, GPUs, CDUs and the design points the plant is sized for."""

    def __init__(self, site: Site, params: PhysicsParams) -> None:
        cfg = site.config
        self.params = params
        self.plant_type = cfg.plant.type
        self.crah_share = cfg.plant.crah_share
        self.ups_rated_w = cfg.ups.rated_kw * 1000.0
        self._build_racks(site)
        self._build_cdus(site)

    def _build_racks(self, site: Site) -> None:
        p = self.params
        cfg = site.config
        self.rack_names: list[str] = []
        self.rack_kinds: list[str] = []
        idle, tdp, floor, limit, counts, other, plimit = [], [], [], [], [], [], []
        for hall, rack in site.racks():
            model = gpu_model(rack.gpu_model)
            self.rack_names.append(rack.name)
            self.rack_kinds.append(rack.workload or hall.workload or cfg.simulation.workload)
            counts.append(rack.gpus)
            idle.append(model.idle_w)
            tdp.append(model.tdp_w)
            floor.append(model.min_w)
            limit.append(model.throttle_c)
            plimit.append(model.power_limit_w * p.power_limit_frac)
            other.append(other_rack_power_w(model, rack.gpus, rack.rated_kw))
        self.rack_index = {n: i for i, n in enumerate(self.rack_names)}
        self.n_racks = len(self.rack_names)
        self.rack_gpus = np.array(counts, dtype=np.int64)
        self.rack_offsets = np.concatenate([[0], np.cumsum(self.rack_gpus)[:-1]]).astype(np.int64)
        self.rack_rated_w = np.array([r.rated_kw * 1000.0 for _, r in site.racks()])
        self.rack_other_full_w = np.array(other)
        g = self._gpu_rack = np.repeat(np.arange(self.n_racks), self.rack_gpus)
        self._g_idle, self._g_tdp = np.array(idle)[g], np.array(tdp)[g]
        self._g_min, self._g_limit = np.array(floor)[g], np.array(limit)[g]
        self._g_power_limit = np.array(plimit)[g]  # enforced board power limit (W)
        # Rack power limits (W) written to the rack controllers (inf: no cap); see :meth:`set_rack_power_limit`.
        self.rack_power_limit_w = np.full(self.n_racks, np.inf)
        rng = np.random.default_rng(cfg.simulation.seed + 7919)
        n = len(g)
        self._g_rfactor = np.clip(1.0 + p.gpu_spread * rng.standard_normal(n), 0.7, 1.5)
        self._g_ufactor = np.clip(1.0 + 0.02 * rng.standard_normal(n), 0.9, 1.1)
        self.design_it_w = float(self.rack_rated_w.sum())

    def _build_cdus(self, site: Site) -> None:
        p = self.params
        cdus = [d.config for d in site.devices if isinstance(d.config, CduConfig)]
        self.cdu_names = [d.name for d in cdus]
        self.cdu_index = {n: i for i, n in enumerate(self.cdu_names)}
        self.rack_cdu = np.zeros(self.n_racks, dtype=np.int64)
        for c, dev in enumerate(cdus):
            for rname in dev.racks:
                self.rack_cdu[self.rack_index[rname]] = c
        nc = len(cdus)
        rated = np.bincount(self.rack_cdu, self.rack_rated_w, nc)
        self.cdu_rated_w = rated
        design = [d.design_flow_lpm for d in cdus]
        self.cdu_design_flow = np.array(
            [f if f is not None else p.cdu_flow_lpm_per_kw * r / 1000.0 for f, r in zip(design, rated, strict=True)]
        )
        # Balancing valves share each CDU's flow in proportion to rated rack power.
        self.rack_flow_share = self.rack_rated_w / rated[self.rack_cdu]
        self.cdu_design_heat_w = rated * (1.0 - self.crah_share)
        self.cdu_fws_design_lpm = (
            self.cdu_design_heat_w / (p.fws_density_kg_m3 * p.fws_cp_j_kgk * p.fws_design_dt_k) * 6e4
        )
        self.fws_design_flow = float(self.cdu_fws_design_lpm.sum())
        design_ups_loss = ph.ups_loss(self.design_it_w * (1.0 + p.dist_loss_frac), self.ups_rated_w, p)
        lighting = self.design_it_w / 1000.0 * p.lighting_w_per_kw
        self.air_design_w = self.design_it_w * (self.crah_share + p.dist_loss_frac) + design_ups_loss + lighting
        self.air_design_m3s = max(self.air_design_w, 1.0) / (p.air_density_kg_m3 * p.air_cp_j_kgk * p.crah_air_dt_k)
        self.rack_to_cdu = np.zeros((self.n_racks, nc))  # one-hot: (N, racks) @ this sums racks per CDU
        self.rack_to_cdu[np.arange(self.n_racks), self.rack_cdu] = 1.0
        self.chiller_cap_liq_w = p.chiller_capacity_frac * float(self.cdu_design_heat_w.sum())
        self.chiller_cap_air_w = p.chiller_capacity_frac * max(self.air_design_w, 1.0)
        self._build_heat_rejection(site)

    def _build_heat_rejection(self, site: Site) -> None:
        """Free coolers, condensers and CRAH coils, each sized from its design point (docs/physics.md)."""
        p = self.params
        limit = site.config.site.max_fws_supply_c
        self.fws_class_limit_c = math.inf if limit is None else limit
        tower = self.plant_type == "chiller_tower"
        approach = p.tower_approach_k if tower else p.drycooler_approach_k

        def cooler(design_w: float, water_dt_k: float) -> FreeCooler:
            q = p.hr_design_margin * max(design_w, 1.0)
            return FreeCooler(q, water_dt_k, approach, p.hr_fan_w_per_kw * q / 1000.0, p.hr_air_ratio, p.hr_min_speed)

        self.fws_cooler = cooler(float(self.cdu_design_heat_w.sum()), p.fws_design_dt_k)
        self.chw_cooler = cooler(self.air_design_w, p.crah_chw_dt_k)
        self.fws_cooler_ua = self.fws_cooler.ua_design
        self.chw_cooler_ua = self.chw_cooler.ua_design
        self.fws_condenser_w = p.hr_design_margin * p.condenser_heat_frac * self.chiller_cap_liq_w
        self.chw_condenser_w = p.hr_design_margin * p.condenser_heat_frac * self.chiller_cap_air_w
        air_w = max(self.air_design_w, 1.0)
        margin = p.hr_design_margin
        self.crah_coil = CrahCoil(air_w, p.crah_air_dt_k, p.crah_chw_dt_k, p.crah_chw_c, AIR_SUPPLY_C, margin)
        self.crah_coil_ua = self.crah_coil.ua_design

    def set_rack_power_limit(self, rack: str, limit_w: float) -> None:
        """Cap rack ``rack`` at ``limit_w`` (its GPUs' board power limits fall so the rack draws at most that, down to
        their clock floor); a limit at or above twice the rated power is no cap."""
        i = self.rack_index[rack]
        self.rack_power_limit_w[i] = np.inf if limit_w >= 2.0 * self.rack_rated_w[i] else float(limit_w)
