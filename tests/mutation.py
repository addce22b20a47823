"""`make mutation`: mutation testing of the core modules with mutmut, a score per module into docs/testing.md.

The one place that says what is mutated and which tests may kill it (module paths change with refactors: edit GROUPS).
Each group runs in its own copy of the repository under .mutation/<group>/ (mutmut writes mutants/ there), with a
[tool.mutmut] section naming the group's files and tests; mutmut then runs, for each mutant, only the selected tests
that execute the mutated function. Not part of `make test`: about 135 minutes with one child, roughly half with two.

    python tests/mutation.py                 # every group, then rewrite the scores in docs/testing.md
    python tests/mutation.py monitor app     # some groups (the scores of the others are kept)
    python tests/mutation.py --report        # only rewrite docs/testing.md from the last runs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(REPO, ".mutation")
DOC = os.path.join(REPO, "docs", "testing.md")
SURVIVORS_DOC = os.path.join(REPO, "docs", "mutation-survivors.md")
BEGIN, END = "<!-- mutation-scores:begin -->", "<!-- mutation-scores:end -->"

# group -> (files to mutate, tests that may kill them, minutes allowed). Tests that only pass through a module (the
# browser, the malformed-run corpus, killed processes) are left out: they are slow and pin other promises.
GROUPS: dict[str, tuple[list[str], list[str], float]] = {
    # Streamlit-free modules that unit tests reach directly, on known inputs: fast to test, so every mutant is checked.
    "pure": (
        ["monitor/format.py", "monitor/run_info.py", "monitor/summary.py", "monitor/table.py", "app/query.py",
         "app/formatting.py", "app/smoothing.py", "monitor/tail.py", "app/tables.py"],
        ["tests/test_monitor_format.py", "tests/test_monitor_summary.py", "tests/test_monitor_table.py",
         "tests/test_monitor_tail.py", "tests/test_run_typed.py", "tests/test_monitor_pinned.py",
         "tests/test_app_query.py", "tests/test_app_formatting.py", "tests/test_app_smoothing.py",
         "tests/test_app_tables.py", "tests/test_app_charts.py"],
        14.0,
    ),
    "monitor": (
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
        15.0,
    ),
    "app": (
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
        24.0,
    ),
    # LiveMonitor's collaborators, driven directly by their unit tests (real metric objects, optimizers, schedules,
    # a RunWriter, tiny models; no fit()). The fit() tests (test_callback_pinned, _sequential, _events, ...) reach
    # them too but cost seconds per mutant; `make test` runs them.
    "callbacks": (
        ["callbacks/_statistics.py", "callbacks/_metrics.py", "callbacks/_checkpoints.py", "callbacks/_batches.py",
         "callbacks/_learning_rate.py", "callbacks/_reporter.py"],
        ["tests/test_callback_statistics.py", "tests/test_callback_collaborators.py",
         "tests/test_callback_lr_units.py"],
        40.0,
    ),
    # Divergence forensics (the watch, the blame, Forensics on a tiny model with known gradients), run.json's
    # environment / model / optimizer / options records and the KerasTuner trial lookup, by their unit tests.
    "callbacks-extra": (
        ["callbacks/_divergence.py", "callbacks/_run_meta.py", "callbacks/_tuner.py"],
        ["tests/test_callback_divergence_units.py", "tests/test_callback_run_meta_units.py",
         "tests/test_callback_gradients.py::test_the_first_layer_in_forward_order_to_break_is_blamed_else_the_"
         "largest_jump"],
        # 665 of 743 mutants were checked in 30 minutes with one child (on two cores shared with another run); the
        # Forensics mutants come last, each tracing the tiny model's gradient function again.
        40.0,
    ),
}
# Groups whose tests run TensorFlow: a process forked after TensorFlow ran an op hangs in its next op, so mutmut's
# default (fork each mutant from the process that ran the tests) would count every mutant as a timeout, i.e. killed.
# A fork server forks them from a process that only imported the tests.
FORK_SERVER_GROUPS = {"callbacks", "callbacks-extra"}
# The copy holds the installed layout (kerascope/app, kerascope/callbacks, kerascope/monitor: what the tests import and
# what is mutated) and the checkout's folders beside it (paths some tests open, e.g. app/streamlit_app.py).
PACKAGE = "kerascope"
SUBPACKAGES = ["app", "callbacks", "monitor"]
COPIED = [PACKAGE, *SUBPACKAGES, "tests", "sample_runs"]  # sample_runs: its code, not the runs


def in_package(path: str) -> str:
    """Where a module lies in the copy: inside kerascope/, so that its file path spells the module name the tests
    import (mutmut matches mutants to the code that ran by that name)."""
    return f"{PACKAGE}/{path}"


def mutmut_section(files: list[str], tests: list[str], fork_server: bool = False) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(item) for item in items) + "]"

    others = [path for path in COPIED if path != PACKAGE]
    return (
        "\n[tool.mutmut]\n"
        f"source_paths = {toml_list([PACKAGE])}\n"
        f"only_mutate = {toml_list([in_package(path) for path in files])}\n"
        f"also_copy = {toml_list(others)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]\n'
        + ('process_isolation = "forkserver"\n' if fork_server else "")
    )


def prepare(group: str) -> str:
    files, tests, _ = GROUPS[group]
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
        f.write(pyproject + mutmut_section(files, tests, group in FORK_SERVER_GROUPS))
    return work


def run_group(group: str, children: int) -> None:
    work = prepare(group)
    limit_s = GROUPS[group][2] * 60
    started = time.monotonic()
    with open(os.path.join(work, "mutmut.log"), "w", encoding="utf-8") as log:
        try:
            subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children)], cwd=work,
                           stdout=log, stderr=subprocess.STDOUT, timeout=limit_s, check=False,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
    with open(os.path.join(work, "run-info.json"), "w", encoding="utf-8") as f:
        json.dump({"seconds": round(time.monotonic() - started), "timed_out": timed_out,
                   "time": time.strftime("%Y-%m-%d %H:%M")}, f)
    print(f"{group}: {time.monotonic() - started:.0f} s{' (time limit reached)' if timed_out else ''}", flush=True)


def statuses(group: str) -> dict[str, dict[str, str]]:
    """file -> {mutant name: status} from mutmut's .meta files (exit codes as mutmut reads them)."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for path in GROUPS[group][0]:
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
    files = GROUPS[group][0]
    rows = [line for line in table.splitlines()
            if line.startswith(f"| *{group}:") or ((match := MODULE_ROW.match(line)) and match["path"] in files)]
    prefixes = tuple(module_name(path) + "." for path in files)
    sections = [match[0] for match in SURVIVOR_SECTION.finditer(survivors_doc) if match["name"].startswith(prefixes)]
    return rows, sections


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
        info_path = os.path.join(WORK, group, "run-info.json")
        info = json.load(open(info_path, encoding="utf-8")) if os.path.exists(info_path) else {}
        found_by_path = statuses(group)
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
            rows.append(f"| *{group}: {info['seconds']} s on {info['time']}"
                        f"{', stopped at its time limit' if info['timed_out'] else ''}* | | | | | | |")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"groups to run: {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--report", action="store_true", help="only rewrite docs/testing.md from the last runs")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2, help="mutants tested in parallel")
    args = parser.parse_args()
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; known: {', '.join(GROUPS)}")
    if not args.report:
        for group in args.groups or GROUPS:
            run_group(group, args.children)
    report()


if __name__ == "__main__":
    main()
