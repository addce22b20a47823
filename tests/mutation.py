"""`make mutation`: mutation testing of the core modules with mutmut, a score per module into docs/testing.md.

The one place that says what is mutated and which tests may kill it (module paths change with refactors: edit GROUPS).
Each group runs in its own copy of the repository under .mutation/<group>/ (mutmut writes mutants/ there), with a
[tool.mutmut] section naming the group's files and tests; mutmut then runs, for each mutant, only the selected tests
that execute the mutated function. Not part of `make test`: the full run takes about 45-65 minutes on this 2-core
machine (docs/testing.md); `--since REF` runs only the groups a change touched.

    python tests/mutation.py                 # every group, then rewrite the scores in docs/testing.md
    python tests/mutation.py monitor app     # some groups (the scores of the others are kept)
    python tests/mutation.py --since main    # the groups whose modules or tests differ from main (a branch's change)
    python tests/mutation.py --report        # only rewrite docs/testing.md from the last runs
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(REPO, ".mutation")
DOC = os.path.join(REPO, "docs", "testing.md")
SURVIVORS_DOC = os.path.join(REPO, "docs", "mutation-survivors.md")
BEGIN, END = "<!-- mutation-scores:begin -->", "<!-- mutation-scores:end -->"

@dataclass(frozen=True)
class Recheck:
    """A second pass over what an earlier group left alive, under another Keras backend: code that only that backend
    runs (JAX's detached training state) is tested where it runs. A mutant killed in either pass counts as killed."""

    of: str  # the group whose surviving mutants are checked again (same files, same mutant names)
    backend: str  # KERAS_BACKEND of this pass
    functions: tuple[str, ...]  # only mutants of these functions/classes ("IterationCounter", "_jax_copy")


@dataclass(frozen=True)
class Group:
    """One mutmut run: the files it mutates and the tests that may kill their mutants. Tests that only pass through a
    module (the browser, the malformed-run corpus, killed processes) are left out: they are slow and pin other
    promises."""

    files: list[str]
    tests: list[str]
    minutes: float  # the run is stopped after this long; mutants left unchecked show in the scores table
    # The tests run TensorFlow (or JAX): a process forked after TensorFlow ran an op hangs in its next op, so mutmut's
    # default (fork each mutant from the process that ran the tests) would count every mutant as a timeout, i.e.
    # killed. A fork server forks them from a process that only imported the tests.
    fork_server: bool = False
    # A mutant is stopped, and counted as killed, after this many times (its tests' time plus a second). mutmut's 15
    # suits tests that compute; tests that wait for a thread with a generous timeout need less.
    timeout_multiplier: float = 15.0
    # Mutants that mostly wait leave the cores free: this many children per child asked for.
    children_per_child: int = 1
    recheck: Recheck | None = None
    # Run by `python tests/mutation.py` without group names (`make mutation`); a group left out runs by name or --since.
    in_full_run: bool = True


GROUPS: dict[str, Group] = {
    # Streamlit-free modules that unit tests reach directly, on known inputs: fast to test, so every mutant is checked.
    "pure": Group(
        ["monitor/format.py", "monitor/run_info.py", "monitor/summary.py", "monitor/table.py", "app/query.py",
         "app/formatting.py", "app/smoothing.py", "monitor/tail.py", "app/tables.py"],
        ["tests/test_monitor_format.py", "tests/test_monitor_summary.py", "tests/test_monitor_table.py",
         "tests/test_monitor_tail.py", "tests/test_run_typed.py", "tests/test_monitor_pinned.py",
         "tests/test_app_query.py", "tests/test_app_formatting.py", "tests/test_app_smoothing.py",
         "tests/test_app_tables.py", "tests/test_app_charts.py"],
        20.0,
    ),
    "monitor": Group(
        ["monitor/reader.py", "monitor/run_files.py", "monitor/store.py", "monitor/watcher.py", "monitor/writer.py"],
        # Slow tests pinned elsewhere are left out: status.json under a thread storm, a 1.9 s events file, a short
        # write in a child process, and the polling observer's variants (watchdog's code; RunWatcher's choice of it
        # is tested in test_monitor_watcher.py).
        ["tests/test_monitor_reader.py", "tests/test_monitor_run_files.py", "tests/test_monitor_store_unit.py",
         "tests/test_monitor_watcher.py", "tests/test_run_typed.py", "tests/test_monitor_store.py",
         "tests/test_monitor_tail.py", "tests/test_monitor_writer_records.py",
         *(f"tests/test_monitor_pinned.py::test_{name}" for name in (
             "a_running_run_turns_stale_only_after_30_s_without_a_heartbeat",
             "inside_the_root_means_below_it_not_sharing_its_prefix",
             "a_sibling_directory_sharing_the_roots_prefix_stays_outside",
             "a_long_backlog_read_at_once_keeps_every_row",
             "a_summary_derived_from_events_reads_the_same_records_as_a_full_parse")),
         *(f"tests/test_monitor_writer.py::test_{name}" for name in (
             "creates_a_run_directory_with_identity_and_running_status",
             "same_name_in_the_same_second_gets_distinct_directories",
             "records_stay_in_memory_until_flush_then_append_in_order", "background_thread_flushes_without_being_asked",
             "close_writes_final_status_and_is_idempotent", "values_that_are_not_json_are_converted_not_lost",
             "write_file_and_json_are_atomic_replacements_in_subdirectories",
             "io_errors_go_to_on_error_and_never_raise",
             "an_on_error_callback_that_raises_is_contained", "unwritable_root_raises_at_creation",
             "resume_after_a_torn_line_starts_with_a_line_break",
             "rewind_drops_superseded_old_records_and_a_following_reader_stays_right")),
         *(f"tests/test_watcher.py::test_{name}[inotify]" for name in (
             "appended_lines_bump_the_run_and_are_read_incrementally", "a_new_run_appears",
             "a_torn_last_line_is_read_once_completed", "a_replaced_or_truncated_file_is_read_again",
             "status_json_replacement_is_seen")),
         "tests/test_watcher.py::test_changed_since_names_the_runs_changed_after_a_total_and_gives_up_past_its_log"],
        20.0,
    ),
    # The monitor modules that the "monitor" group's tests only pass through (the watchers' change log, the storage
    # URLs and ObjectStore, the SQLite catalog), killed by their own unit tests: on their own, so that the watcher
    # and store tests, which reach them on every event and listing, do not run for each of their mutants.
    "monitor-extra": Group(
        ["monitor/changes.py", "monitor/storage.py", "monitor/catalog.py"],
        ["tests/test_monitor_changes.py", "tests/test_monitor_storage.py", "tests/test_monitor_catalog.py"],
        8.0,
    ),
    # Runs on object storage: the uploader and the readers on fsspec's in-memory filesystem (memory://), spools in
    # tmp_path; the SeaweedFS tests (test_object_storage.py) take minutes and are left to `make test`.
    "remote": Group(
        ["monitor/remote_reader.py", "monitor/remote_writer.py"],
        ["tests/test_monitor_remote_units.py",
         *(f"tests/test_monitor_reader.py::test_{name}" for name in (
             "a_run_on_an_object_store_reads_like_a_local_one",
             "an_object_store_run_without_a_readable_summary_derives_it_from_its_segments",
             "run_json_replaced_on_an_object_store_is_read_again_once_listed"))],
        20.0,
        # Most of its mutants that are killed by a timeout stop an uploader thread that a test then waits for.
        timeout_multiplier=5.0,
        children_per_child=2,
    ),
    "app": Group(
        ["app/alerts.py", "app/charts.py", "app/compare_charts.py", "app/run_charts.py", "app/cli.py"],
        ["tests/test_app_alerts.py", "tests/test_app_chart_builders.py", "tests/test_app_run_charts.py",
         "tests/test_app_compare_charts.py", "tests/test_app_cli_options.py", "tests/test_app_charts.py",
         *(f"tests/test_app_cli.py::test_{name}" for name in (
             "defaults_bind_localhost_and_keep_streamlit_away_from_the_runs",
             "host_port_and_logdir_from_arguments_and_environment", "a_local_logdir_is_made_absolute_and_created",
             "plotly_js_is_served_gzipped_and_the_cartesian_bundle_only_for_the_same_version",
             "plotly_js_that_is_current_is_not_written_again",
             "a_read_only_package_folder_serves_plotly_js_from_the_cache_directory",
             "without_any_writable_folder_the_dashboard_starts_without_charts"))],
        30.0,
    ),
    # LiveMonitor's collaborators, driven directly by their unit tests (real metric objects, optimizers, schedules,
    # a RunWriter, tiny models; no fit()). The fit() tests (test_callback_pinned, _sequential, _events, ...) reach
    # them too but cost seconds per mutant; `make test` runs them.
    "callbacks": Group(
        ["callbacks/_statistics.py", "callbacks/_metrics.py", "callbacks/_checkpoints.py", "callbacks/_batches.py",
         "callbacks/_learning_rate.py", "callbacks/_reporter.py"],
        ["tests/test_callback_statistics.py", "tests/test_callback_collaborators.py",
         "tests/test_callback_lr_units.py"],
        40.0,
        fork_server=True,
    ),
    # Divergence forensics (the watch, the blame, Forensics on a tiny model with known gradients), run.json's
    # environment / model / optimizer / options records and the KerasTuner trial lookup, by their unit tests.
    "callbacks-extra": Group(
        ["callbacks/_divergence.py", "callbacks/_run_meta.py", "callbacks/_tuner.py"],
        ["tests/test_callback_divergence_units.py", "tests/test_callback_run_meta_units.py",
         "tests/test_callback_gradients.py::test_the_first_layer_in_forward_order_to_break_is_blamed_else_the_"
         "largest_jump"],
        40.0,
        fork_server=True,
    ),
    # Resume after a crash and the fit() lifecycle hooks, by unit tests on real run directories, frames and threads.
    "callbacks-life": Group(
        ["callbacks/_resume.py", "callbacks/_lifecycle.py"],
        ["tests/test_callback_resume_units.py", "tests/test_callback_lifecycle_units.py"],
        15.0,
        fork_server=True,
    ),
    # LiveMonitor itself, its hooks called by hand on a tiny compiled model, as a custom training loop calls them.
    # Every test passes through on_train_begin (run.json, the model card, the collaborators), so its ~1,000 mutants
    # take longer than all the other groups together: run by name, or by --since when LiveMonitor or its tests change.
    "callbacks-live": Group(
        ["callbacks/live_monitor.py"],
        ["tests/test_live_monitor_hooks.py"],
        60.0,
        fork_server=True,
        in_full_run=False,
    ),
    # The model card (DOT graph, layer table, plot_model PNG, write_model_card into a RunWriter), the system sampler's
    # thread and which process writes the run, by their unit tests on tiny models built directly (no fit()). Its
    # sampler tests wait for the sampler's ticks and its card tests run graphviz's dot, seconds per mutant: run by name,
    # or by --since when these modules or tests change.
    "callbacks-card": Group(
        ["callbacks/_model_card.py", "callbacks/_system.py", "callbacks/_distributed.py"],
        ["tests/test_callback_model_card_units.py", "tests/test_callback_system_units.py",
         "tests/test_callback_distributed_units.py"],
        30.0,
        fork_server=True,
        in_full_run=False,
    ),
    # A second pass, under JAX, over the callbacks group's survivors in IterationCounter, which follows a
    # LossScaleOptimizer's counter through the trainer's detached state, and the tracker methods that drive it (batch
    # ends in a worker thread are captured at batch begin). Each test is a loss-scaled fit, seconds long.
    "callbacks-jax": Group(
        ["callbacks/_learning_rate.py"],
        [f"tests/test_callback_training_loops.py::test_{name}" for name in (
            "schedule_read_at_the_iteration_a_loss_scaled_update_used",
            "loss_scaled_schedule_with_batch_ends_in_a_worker_thread",
            "loss_scaled_schedule_with_a_batch_end_handled_during_validation")],
        15.0,
        fork_server=True,
        recheck=Recheck(of="callbacks", backend="jax",
                        functions=("IterationCounter", "_jax_copy", "batch_begin", "steps_done")),
    ),
}

# The copy holds the installed layout (kerascope/app, kerascope/callbacks, kerascope/monitor: what the tests import and
# what is mutated) and the checkout's folders beside it (paths some tests open, e.g. app/streamlit_app.py).
PACKAGE = "kerascope"
SUBPACKAGES = ["app", "callbacks", "monitor"]
COPIED = [PACKAGE, *SUBPACKAGES, "tests", "sample_runs"]  # sample_runs: its code, not the runs


# pytest's own plugins that no test here needs (no fixture, marker or report of theirs is used): each mutant's session
# sets them up for nothing. The cache would also be written by every mutant.
PYTEST_PLUGINS_OFF = [f"-pno:{name}" for name in (
    "cacheprovider", "doctest", "junitxml", "pastebin", "legacypath", "stepwise", "unraisableexception",
    "threadexception", "faulthandler", "setuponly", "setupplan", "debugging")]


def pytest_collection_finish(session: object) -> None:
    """Loaded into mutmut's pytest runs (`-p tests.mutation`): everything alive once the tests are collected (Keras,
    TensorFlow, the test modules) leaves the garbage collector's care. A fork server's mutant runs in a process forked
    from one that only collected the tests, and pytest ends every session with five full collections: walking
    TensorFlow's heap there took ~2.5 s of a mutant's ~3 s, and copied every page the fork shared. (mutmut's default
    runner freezes its heap itself before it forks.)"""
    gc.collect()
    gc.freeze()


def in_package(path: str) -> str:
    """Where a module lies in the copy: inside kerascope/, so that its file path spells the module name the tests
    import (mutmut matches mutants to the code that ran by that name)."""
    return f"{PACKAGE}/{path}"


def mutmut_section(group: Group) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(item) for item in items) + "]"

    others = [path for path in COPIED if path != PACKAGE]
    return (
        "\n[tool.mutmut]\n"
        f"source_paths = {toml_list([PACKAGE])}\n"
        f"only_mutate = {toml_list([in_package(path) for path in group.files])}\n"
        f"also_copy = {toml_list(others)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(group.tests)}\n"
        f"pytest_add_cli_args = {toml_list(['-p', 'tests.mutation', *PYTEST_PLUGINS_OFF, '-x', '-q'])}\n"
        f"timeout_multiplier = {group.timeout_multiplier}\n"
        + ('process_isolation = "forkserver"\n' if group.fork_server else "")
    )


def prepare(group: str) -> str:
    work = os.path.join(WORK, group)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for path in COPIED:
        source, target = os.path.join(REPO, path), os.path.join(work, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if path == "sample_runs":
            os.makedirs(target)
            for name in os.listdir(source):
                if name.endswith(".py"):
                    shutil.copy2(os.path.join(source, name), target)
        else:
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "corpus"))
    for folder in SUBPACKAGES:  # the installed layout: kerascope/app, kerascope/callbacks, kerascope/monitor
        shutil.copytree(os.path.join(work, folder), os.path.join(work, in_package(folder)))
    with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as f:
        pyproject = f.read()
    # mutmut puts the mutated copy first on sys.path; pytest's `pythonpath = ["."]` would put the original back.
    pyproject = re.sub(r'^pythonpath = .*\n', "", pyproject, flags=re.M)
    with open(os.path.join(work, "pyproject.toml"), "w", encoding="utf-8") as f:
        f.write(pyproject + mutmut_section(GROUPS[group]))
    return work


def recheck_names(group: str) -> list[str] | None:
    """The mutants a recheck pass tests: those its earlier group left alive, of the functions it names. None when
    the earlier group has no results in this checkout."""
    recheck = GROUPS[group].recheck
    assert recheck is not None
    found = statuses(recheck.of)
    if not found:
        return None
    files = set(GROUPS[group].files)
    return sorted(name for path, by_name in found.items() if path in files for name, status in by_name.items()
                  if status not in ("killed", "timeout", "segfault")
                  and any(f"{function}__mutmut_" in name or f"ǁ{function}ǁ" in name
                          for function in recheck.functions))


def run_group(group: str, children: int) -> None:
    names: list[str] = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    recheck = GROUPS[group].recheck
    if recheck:
        found = recheck_names(group)
        if found is None:
            print(f"{group}: skipped, {recheck.of} has no results to recheck", flush=True)
            return
        if not found:
            print(f"{group}: nothing to recheck", flush=True)
        names, env["KERAS_BACKEND"] = found, recheck.backend
    work = prepare(group)
    # No third-party pytest plugin is used by the tests: not loading them saves a third of a fast mutant's time. Each
    # mutant's pytest session leaves its numbered temporary folder (mutmut's children end without pytest's clean-up),
    # so the group's sessions share a folder of their own, removed afterwards.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTEST_DEBUG_TEMPROOT"] = os.path.join(work, "tmp")
    os.makedirs(env["PYTEST_DEBUG_TEMPROOT"])
    children *= GROUPS[group].children_per_child
    limit_s = GROUPS[group].minutes * 60
    started = time.monotonic()
    with open(os.path.join(work, "mutmut.log"), "w", encoding="utf-8") as log:
        try:
            if not recheck or names:
                subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *names],
                               cwd=work, stdout=log, stderr=subprocess.STDOUT, timeout=limit_s, check=False, env=env)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
    shutil.rmtree(env["PYTEST_DEBUG_TEMPROOT"], ignore_errors=True)
    with open(os.path.join(work, "run-info.json"), "w", encoding="utf-8") as f:
        json.dump({"seconds": round(time.monotonic() - started), "timed_out": timed_out,
                   "time": time.strftime("%Y-%m-%d %H:%M"), "children": children}, f)
    print(f"{group}: {time.monotonic() - started:.0f} s{' (time limit reached)' if timed_out else ''}", flush=True)


def statuses(group: str) -> dict[str, dict[str, str]]:
    """file -> {mutant name: status} from mutmut's .meta files (exit codes as mutmut reads them)."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for path in GROUPS[group].files:
        meta = os.path.join(WORK, group, "mutants", in_package(path) + ".meta")
        if not os.path.exists(meta):
            continue
        with open(meta, encoding="utf-8") as f:
            codes = json.load(f).get("exit_code_by_key", {})
        found[path] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return found


def diffs(group: str, names: list[tuple[str, str]]) -> dict[str, str]:
    """The changed lines of each mutant (mutant name, file), read in-process from mutmut's index."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    found, cwd = {}, os.getcwd()
    os.chdir(os.path.join(WORK, group))  # mutmut reads its config and mutants/ from the current directory
    reset_config()
    try:
        for name, path in names:
            try:
                text = get_diff_for_mutant(name, path=in_package(path))
            except Exception as exc:  # a mutant the index lost: say so rather than stop the report
                text = f"(no diff: {exc!r})"
            found[name] = "\n".join(line for line in text.splitlines()
                                    if line.startswith(("+", "-")) and not line.startswith(("+++", "---")))
    finally:
        os.chdir(cwd)
        reset_config()
    return found


MODULE_ROW = re.compile(r"^\| `(?P<path>[^`]+)` \| (?P<checked>\d+) \| (?P<killed>\d+) \|")
SURVIVOR_SECTION = re.compile(r"^## `(?P<name>[^`]+)` .*?(?=^## |\Z)", flags=re.M | re.S)


def module_name(path: str) -> str:
    """"monitor/reader.py" -> "kerascope.monitor.reader", the prefix of its mutants' names."""
    return in_package(path).removesuffix(".py").replace("/", ".")


def earlier_results(group: str, table: str, survivors_doc: str) -> tuple[list[str], list[str]]:
    """What the docs hold of a group that has no results in this checkout (not run here): its modules' rows and its
    run's row from the scores table, and its modules' sections of the survivors list. Modules that have left the
    group since are dropped."""
    files = GROUPS[group].files
    rows = [line for line in table.splitlines()
            if line.startswith(f"| *{group}:") or ((match := MODULE_ROW.match(line)) and match["path"] in files)]
    prefixes = tuple(module_name(path) + "." for path in files)
    sections = [match[0] for match in SURVIVOR_SECTION.finditer(survivors_doc) if match["name"].startswith(prefixes)]
    return rows, sections


def children_note(info: dict) -> str:
    """", 2 children" for a run that recorded how many it had (runs before that recorded nothing)."""
    children = info.get("children")
    return f", {children} child{'ren' if children != 1 else ''}" if children else ""


def report() -> None:
    """Rewrite the scores table in docs/testing.md and the survivors list. Groups run in this checkout get fresh rows;
    the others keep the rows (and listed survivors) of their last run, with its date."""
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    earlier_table = doc[doc.index(BEGIN) : doc.index(END)]
    earlier_survivors = ""
    if os.path.exists(SURVIVORS_DOC):
        with open(SURVIVORS_DOC, encoding="utf-8") as f:
            earlier_survivors = f.read()
    rows, survivors, kept_sections = [], [], []
    totals = {"killed": 0, "all": 0}
    for group in GROUPS:
        if GROUPS[group].recheck:
            continue  # merged into the group it rechecks, below
        info_path = os.path.join(WORK, group, "run-info.json")
        info = json.load(open(info_path, encoding="utf-8")) if os.path.exists(info_path) else {}
        found_by_path = statuses(group)
        rechecked = {name: other.recheck for name, other in GROUPS.items()
                     if other.recheck and other.recheck.of == group}
        for recheck_group in rechecked:
            if not found_by_path:
                break
            for path, by_name in statuses(recheck_group).items():
                for name, status in by_name.items():
                    if status in ("killed", "timeout", "segfault") and name in found_by_path.get(path, {}):
                        found_by_path[path][name] = status
        if not found_by_path:
            kept_rows, sections = earlier_results(group, earlier_table, earlier_survivors)
            for line in kept_rows:
                if match := MODULE_ROW.match(line):
                    totals["all"] += int(match["checked"])
                    totals["killed"] += int(match["killed"])
            rows.extend(kept_rows)
            kept_sections.extend(sections)
            continue
        for path, found in found_by_path.items():
            counts: dict[str, int] = {}
            for status in found.values():
                counts[status] = counts.get(status, 0) + 1
            # A mutant that hangs or crashes the test process (a native library's segfault) was noticed too.
            killed = counts.get("killed", 0) + counts.get("timeout", 0) + counts.get("segfault", 0)
            checked = sum(n for s, n in counts.items() if s != "not checked")
            totals["killed"] += killed
            totals["all"] += checked
            score = f"{100 * killed / checked:.1f} %" if checked else "—"
            rows.append(f"| `{path}` | {checked} | {killed} | {counts.get('survived', 0)} | "
                        f"{counts.get('no tests', 0)} | {counts.get('not checked', 0)} | {score} |")
            alive = [(name, status) for name, status in sorted(found.items())
                     if status in ("survived", "suspicious")]  # "no test ran it": counted in the table only
            changes = diffs(group, [(name, path) for name, _ in alive])
            survivors.extend((path, name, status, changes[name]) for name, status in alive)
        if info:
            rows.append(f"| *{group}: {info['seconds']} s on {info['time']}{children_note(info)}"
                        f"{', stopped at its time limit' if info['timed_out'] else ''}* | | | | | | |")
        for recheck_group, recheck in rechecked.items():
            recheck_path = os.path.join(WORK, recheck_group, "run-info.json")
            if found_by_path and os.path.exists(recheck_path):
                with open(recheck_path, encoding="utf-8") as f:
                    recheck_info = json.load(f)
                rows.append(f"| *{recheck_group} (its survivors in {', '.join(recheck.functions)} under "
                            f"KERAS_BACKEND={recheck.backend}): {recheck_info['seconds']} s on {recheck_info['time']}"
                            f"{children_note(recheck_info)}"
                            f"{', stopped at its time limit' if recheck_info['timed_out'] else ''}* | | | | | | |")
    overall = f"{100 * totals['killed'] / totals['all']:.1f} %" if totals["all"] else "—"
    table = "\n".join([
        BEGIN,
        "| module | mutants checked | killed (incl. timeouts, crashes) | survived | no test ran it | not checked "
        "| score |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        f"| **all** | {totals['all']} | {totals['killed']} | | | | **{overall}** |",
        END,
    ])
    doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: table, doc, flags=re.S)
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(doc)
    with open(SURVIVORS_DOC, "w", encoding="utf-8") as f:
        f.write("# Mutants that survived (generated by `make mutation`; judged in docs/testing.md)\n\n"
                "Mutants that no selected test ran are counted in the scores table, not listed.\n\n")
        for _path, name, status, change in survivors:
            f.write(f"## `{name}` ({status})\n\n```diff\n{change}\n```\n\n")
        f.writelines(kept_sections)
    print(table)


# Test helpers every group's tests import: a change to one of them can change any group's verdicts.
SHARED_TEST_FILES = {"tests/conftest.py", "tests/train_helpers.py", "tests/run_factory.py"}


def changed_groups(ref: str) -> list[str]:
    """The groups whose mutated files or selected test files differ from git `ref` (committed, staged, unstaged or
    untracked), in run order; a recheck group goes with the group it rechecks."""
    def git(*args: str) -> set[str]:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout
        return set(out.split())

    changed = git("diff", "--name-only", ref, "--") | git("ls-files", "--others", "--exclude-standard")
    everything = bool(changed & SHARED_TEST_FILES)
    chosen = []
    for name, group in GROUPS.items():
        if group.recheck:
            touched = group.recheck.of in chosen
        else:
            touched = everything or bool(changed & ({*group.files} | {test.split("::")[0] for test in group.tests}))
        if touched:
            chosen.append(name)
    return chosen


def expected_seconds(group: str) -> float:
    """How long the group's last run here took, else its time limit."""
    try:
        with open(os.path.join(WORK, group, "run-info.json"), encoding="utf-8") as f:
            return float(json.load(f)["seconds"])
    except (OSError, ValueError, KeyError):
        return GROUPS[group].minutes * 60


def run_groups(groups: list[str], children: int) -> None:
    """Run the groups `children` at a time with one child each (all children to a group run alone), the longest
    first: a group's own start (copying, mutmut's stats pass over all its tests, its fork server's imports) takes one
    core while another group tests mutants on the other. A recheck starts once the group it rechecks has finished."""
    pending = sorted(groups, key=expected_seconds, reverse=True)
    each = max(1, children // min(children, len(groups))) if groups else 1
    running: dict[Future[None], str] = {}
    with ThreadPoolExecutor(max_workers=children) as pool:
        while pending or running:
            waiting_for = {*pending, *running.values()}
            ready = [name for name in pending
                     if not (GROUPS[name].recheck and GROUPS[name].recheck.of in waiting_for)]
            for name in ready[: max(0, children - len(running))]:
                pending.remove(name)
                running[pool.submit(run_group, name, each)] = name
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                del running[future]
                future.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"groups to run: {', '.join(GROUPS)} (default: all but "
                        f"{', '.join(name for name, group in GROUPS.items() if not group.in_full_run)})")
    parser.add_argument("--report", action="store_true", help="only rewrite docs/testing.md from the last runs")
    parser.add_argument("--since", metavar="REF", help="run the groups whose modules or tests changed since git REF")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2, help="mutants tested in parallel")
    args = parser.parse_args()
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; known: {', '.join(GROUPS)}")
    if args.since and args.groups:
        parser.error("name groups or --since, not both")
    groups = changed_groups(args.since) if args.since else args.groups or [
        name for name, group in GROUPS.items() if group.in_full_run]
    if args.since:
        print(f"changed since {args.since}: {', '.join(groups) or 'no group'}", flush=True)
    if not args.report:
        run_groups(groups, args.children)
    report()


if __name__ == "__main__":
    main()
