"""The REST API: KPIs, live state, forecasts, headroom, tenants, alarms and controller state over HTTP."""
