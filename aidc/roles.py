"""Point roles: what a point means, so analytics and control never hard-code device names (DESIGN.md §3)."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    """The meaning of a point, independent of the device that provides it."""

    # Energy counters (ISO/IEC 30134-2 measurement points) and the matching powers.
    FACILITY_ENERGY = "facility_energy"
    FACILITY_POWER = "facility_power"
    IT_ENERGY_UPS_OUTPUT = "it_energy_ups_output"  # PUE category 1 (basic)
    IT_POWER_UPS_OUTPUT = "it_power_ups_output"
    IT_ENERGY_PDU_OUTPUT = "it_energy_pdu_output"  # PUE category 2 (intermediate)
    IT_POWER_PDU_OUTPUT = "it_power_pdu_output"
    IT_ENERGY_EQUIPMENT_INPUT = "it_energy_equipment_input"  # PUE category 3 (advanced)
    IT_POWER_EQUIPMENT_INPUT = "it_power_equipment_input"
    UPS_INPUT_ENERGY = "ups_input_energy"
    UPS_INPUT_POWER = "ups_input_power"
    COOLING_ENERGY = "cooling_energy"
    COOLING_POWER = "cooling_power"
    OTHER_ENERGY = "other_energy"  # lighting, offices
    OTHER_POWER = "other_power"
    VOLTAGE = "voltage"
    CURRENT = "current"
    POWER_FACTOR = "power_factor"
    # Cooling plant.
    CHILLER_POWER = "chiller_power"
    CHILLER_COP = "chiller_cop"
    HEAT_REJECTION_FAN_POWER = "heat_rejection_fan_power"
    PUMP_POWER = "pump_power"
    FREE_COOLING_STATE = "free_cooling_state"
    FREE_COOLER_FAN_SPEED = "free_cooler_fan_speed"  # % of full speed: the FWS free cooler's fans
    OUTDOOR_DRYBULB = "outdoor_drybulb"
    OUTDOOR_WETBULB = "outdoor_wetbulb"
    FWS_SUPPLY_TEMP = "fws_supply_temp"
    FWS_RETURN_TEMP = "fws_return_temp"
    FWS_SUPPLY_TEMP_SETPOINT = "fws_supply_temp_setpoint"
    CHW_SUPPLY_TEMP = "chw_supply_temp"  # chilled water to the CRAH coils
    CHW_SUPPLY_TEMP_SETPOINT = "chw_supply_temp_setpoint"
    HALL_DEWPOINT = "hall_dewpoint"
    # CDU / technology cooling system.
    TCS_SUPPLY_TEMP = "tcs_supply_temp"
    TCS_RETURN_TEMP = "tcs_return_temp"
    TCS_SUPPLY_TEMP_SETPOINT = "tcs_supply_temp_setpoint"
    TCS_FLOW = "tcs_flow"
    TCS_DP = "tcs_dp"
    TCS_DP_SETPOINT = "tcs_dp_setpoint"
    CDU_PUMP_SPEED = "cdu_pump_speed"
    CDU_VALVE = "cdu_valve"
    ALARM = "alarm"
    HEARTBEAT = "heartbeat"
    # Racks and GPUs.
    RACK_POWER = "rack_power"
    RACK_POWER_LIMIT = "rack_power_limit"  # a writable cap on the rack's power (Redfish PowerLimit, rack controller)
    RACK_COOLANT_INLET_TEMP = "rack_coolant_inlet_temp"
    RACK_COOLANT_OUTLET_TEMP = "rack_coolant_outlet_temp"
    RACK_COOLANT_FLOW = "rack_coolant_flow"
    LEAK = "leak"
    GPU_POWER = "gpu_power"
    GPU_TEMP = "gpu_temp"
    GPU_UTIL = "gpu_util"
    GPU_CLOCK = "gpu_clock"  # SM clock as % of the model's maximum (DCGM SM clock): power-cap and thermal slowdown
    # Water and carbon inputs for WUE / CUE (optional at a site).
    WATER_VOLUME = "water_volume"
    REUSED_ENERGY = "reused_energy"
    RENEWABLE_ENERGY = "renewable_energy"
    CARBON_INTENSITY = "carbon_intensity"
