"""Energy and CO2 per stage (CodeCarbon's offline tracker: no network) plus remote estimates.

Local hardware is measured (on CPUs without RAPL, CodeCarbon itself estimates from the CPU's
rated power). A remote endpoint's hardware cannot be measured: its energy is estimated from
tokens with `remote_joules_per_token` and marked `estimated` wherever it shows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import Field

from psilm.settings import Settings


class EmissionsSettings(Settings):
    enabled: bool = Field(True, description="Measure energy and CO2 per stage with CodeCarbon.")
    country_iso_code: str = Field("USA", description="Grid carbon intensity to use (ISO 3166 alpha-3).")
    remote_joules_per_token: float = Field(
        2.0,
        ge=0,
        description=(
            "Energy per generated or read token on a remote endpoint. Default: ~2 J/token, the order of "
            "magnitude reported for 7-70B models served on datacenter GPUs; set it for your hardware."
        ),
    )
    grid_kg_per_kwh: float = Field(
        0.38, ge=0, description="CO2 per kWh for remote estimates when no local measurement gives one."
    )


@contextmanager
def track(settings: EmissionsSettings, stage: str) -> Iterator[dict[str, Any]]:
    """Measure the block; fills the yielded dict with duration_s, energy_kwh, co2_kg."""
    out: dict[str, Any] = {}
    tracker = None
    if settings.enabled:
        try:
            from codecarbon import OfflineEmissionsTracker

            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            tracker = OfflineEmissionsTracker(
                country_iso_code=settings.country_iso_code,
                project_name=f"psilm:{stage}",
                log_level="error",
                output_methods=[],  # the ledger lives in manifest.json, not in emissions.csv
                tracking_mode="process",
                allow_multiple_runs=True,
            )
            tracker.start()
        except Exception as e:  # the ledger must never stop a run; say why it is missing
            out["energy_error"] = f"codecarbon unavailable: {e}"
            tracker = None
    t0 = time.time()
    try:
        yield out
    finally:
        out["duration_s"] = round(time.time() - t0, 3)
        if tracker is not None:
            try:
                co2 = tracker.stop() or 0.0
                data = tracker.final_emissions_data
                out["energy_kwh"] = float(data.energy_consumed)
                out["co2_kg"] = float(co2)
                out["energy_source"] = "measured (codecarbon; CPU power estimated where no RAPL)"
            except Exception as e:
                out["energy_error"] = f"codecarbon failed: {e}"


def remote_estimate(settings: EmissionsSettings, tokens: int, kg_per_kwh: float | None = None) -> dict:
    """Energy and CO2 of tokens served by a machine we cannot measure (marked estimated)."""
    kwh = tokens * settings.remote_joules_per_token / 3.6e6
    return {
        "energy_kwh": kwh,
        "co2_kg": kwh * (kg_per_kwh if kg_per_kwh else settings.grid_kg_per_kwh),
        "estimated": True,
        "basis": f"{tokens} tokens x {settings.remote_joules_per_token} J/token",
    }
