import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests import layer_test_case  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    """Prints the worst round-trip and log-det errors measured by the shared layer helper."""
    if layer_test_case.MEASURED:
        terminalreporter.write_sep("-", "invertibility errors measured by run_layer_test")
        terminalreporter.write_line(f"{'case':<44} {'round trip (f32)':>17} {'log-det vs slogdet (f64)':>25}")
        for name, (rt, ld) in sorted(layer_test_case.MEASURED.items()):
            ld_text = "constant J" if ld is None else f"{ld:.2e}"
            terminalreporter.write_line(f"{name:<44} {rt:>17.2e} {ld_text:>25}")
