"""Shared fixtures. Tests train real (tiny) Keras models; keras is imported lazily so dashboard tests stay fast."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    return root


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test reports what its page showed and what the app logged (saved under test-artifacts/)."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    browser_tests = sys.modules.get("test_browser")
    for page, process in getattr(browser_tests, "OPEN_PAGES", []):
        report.sections.append(("what the page showed", browser_tests.save_evidence(page, process, item.nodeid)))


@pytest.fixture(autouse=True, scope="session")
def _catalogs_in_a_temporary_folder(tmp_path_factory):
    """Dashboards started by the tests keep their catalogs here, not in the user's ~/.cache."""
    os.environ["KERASCOPE_CACHE_DIR"] = str(tmp_path_factory.mktemp("catalogs"))
    yield
