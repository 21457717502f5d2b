"""Shared pytest configuration. Fixtures live in tests/support/<area>.py, one module per area;
register a fixture module by adding it to pytest_plugins (one line each)."""

pytest_plugins: list[str] = [
    "tests.support.store",
    "tests.support.logs",
    "tests.support.sshd",
    "tests.support.alertmanager",
    "tests.support.kube",
    "tests.support.kube_writes",
    "tests.support.stackstubs",
    "tests.support.slack",
    "tests.support.deploy",
    "tests.support.postgres",
    "tests.support.leases",
]
