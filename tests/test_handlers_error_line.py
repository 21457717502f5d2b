"""quote_error: the line of a crash log that names the error, for each runtime's way of writing it."""

from __future__ import annotations

import pytest

from bot.evidence import ContainerState
from handlers.base import describe_exit, quote_error

PYTHON = """\
INFO:     Started server process [1]
INFO:     Waiting for application startup.
Traceback (most recent call last):
  File "/srv/app/main.py", line 41, in <module>
    settings = load_settings()
               ^^^^^^^^^^^^^^^
  File "/srv/app/settings.py", line 12, in load_settings
    raise ValueError(f"DATABASE_URL is not set")
ValueError: DATABASE_URL is not set
"""

PYTHON_CHAINED = """\
Traceback (most recent call last):
  File "/usr/local/lib/python3.12/site-packages/psycopg/connection.py", line 119, in connect
    raise last_ex.with_traceback(None)
psycopg.OperationalError: connection failed: Connection refused
\tIs the server running on that host and accepting TCP/IP connections?

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/app/worker.py", line 8, in <module>
    db.connect()
sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection failed: Connection refused
(Background on this error at: https://sqlalche.me/e/20/e3q8)
"""

JAVA = """\
  .   ____          _            __ _ _
 :: Spring Boot ::                (v3.2.4)
2025-10-09T21:57:58.412Z  INFO 1 --- [           main] c.e.orders.OrdersApplication : Starting
Exception in thread "main" java.lang.IllegalStateException: Failed to load ApplicationContext
\tat org.springframework.boot.SpringApplication.run(SpringApplication.java:335)
\tat com.example.orders.OrdersApplication.main(OrdersApplication.java:10)
Caused by: org.springframework.beans.factory.BeanCreationException: Error creating bean 'dataSource'
\tat org.springframework.beans.factory.support.AbstractBeanFactory.getBean(AbstractBeanFactory.java:208)
\t... 12 more
Caused by: java.net.UnknownHostException: orders-db.shop.svc.cluster.local
\tat java.base/java.net.InetAddress$CachedLookup.get(InetAddress.java:988)
\t... 30 more
"""

JAVA_LOGGED = """\
2025-10-09 21:58:01.002 ERROR 1 --- [main] o.s.boot.SpringApplication : Application run failed
org.apache.kafka.common.KafkaException: Failed to construct kafka consumer
\tat org.apache.kafka.clients.consumer.KafkaConsumer.<init>(KafkaConsumer.java:823)
Caused by: org.apache.kafka.common.config.ConfigException: No resolvable bootstrap urls given
\tat org.apache.kafka.clients.ClientUtils.parseAndValidateAddresses(ClientUtils.java:89)
"""

GO_PANIC = """\
I1009 21:57:59.101  1 main.go:40] starting controller version=v0.9.1
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x18 pc=0x1a2b3c]

goroutine 1 [running]:
main.(*Reconciler).handleError(0x0, {0x0, 0x0})
\t/src/reconciler.go:88 +0x1c
main.main()
\t/src/main.go:52 +0x2a5
"""

GO_FATAL = """\
fatal error: concurrent map writes

goroutine 51 [running]:
main.(*cache).put(...)
"""

LOGFMT = """\
ts=2025-10-09T21:57:59.001Z caller=main.go:585 level=info msg="Starting Prometheus Server" mode=server
ts=2025-10-09T21:57:59.310Z caller=main.go:1110 level=error err="opening storage failed: lock DB directory: \
open /prometheus/lock: permission denied"
ts=2025-10-09T21:57:59.311Z caller=main.go:1111 level=info msg="See you next time!"
"""

LOGFMT_MSG_AND_ERR = """\
level=warn ts=2025-10-09T21:57:00Z msg="retrying" attempt=3
level=error ts=2025-10-09T21:57:01Z msg="failed to start HTTP server" err="listen tcp :9090: bind: address \
already in use"
"""

JSON_ZAP = """\
{"level":"info","ts":1728511078.1,"logger":"setup","msg":"starting manager"}
{"level":"error","ts":1728511079.3,"logger":"setup","msg":"unable to start manager","error":"no matches \
for kind \\"Certificate\\" in version \\"cert-manager.io/v1\\""}
"""

JSON_SEVERITY = """\
{"severity":"INFO","message":"listening on :8080"}
{"severity":"CRITICAL","message":"cannot read /etc/payments/keys.json: no such file or directory"}
{"severity":"INFO","message":"shutting down"}
"""

NODE = """\
/app/dist/server.js:17
    throw new TypeError('PORT must be a number, got "http"');
    ^

TypeError: PORT must be a number, got "http"
    at Object.<anonymous> (/app/dist/server.js:17:11)
    at Module._compile (node:internal/modules/cjs/loader:1256:14)

Node.js v20.11.1
"""

RUST = """\
thread 'main' panicked at src/config.rs:22:10:
called `Result::unwrap()` on an `Err` value: Os { code: 2, kind: NotFound, message: "No such file" }
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
"""

KLOG = """\
I1009 21:57:58.000001       1 server.go:120] Version: v1.30.2
E1009 21:57:59.000002       1 run.go:74] "command failed" err="failed to load kubeconfig: no such file"
"""

PLAIN = """\
2025/10/09 21:57:58 [notice] 1#1: using the "epoll" event method
2025/10/09 21:57:58 [emerg] 1#1: host not found in upstream "api:8080" in /etc/nginx/conf.d/default.conf:4
nginx: [emerg] host not found in upstream "api:8080" in /etc/nginx/conf.d/default.conf:4
"""

PLAIN_LEVEL = """\
2025-10-09 21:57:58,101 INFO  [main] Loading config
2025-10-09 21:57:58,230 ERROR [main] Could not bind to 0.0.0.0:5432: Address in use
2025-10-09 21:57:58,231 INFO  [main] exiting
"""

NOTHING = """\
starting worker 3
connecting to queue
giving up
"""


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (PYTHON, ("ValueError: DATABASE_URL is not set",)),
        (
            PYTHON_CHAINED,
            (
                "sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection failed: "
                "Connection refused",
            ),
        ),
        (
            JAVA,
            (
                'Exception in thread "main" java.lang.IllegalStateException: Failed to load '
                "ApplicationContext",
                "Caused by: java.net.UnknownHostException: orders-db.shop.svc.cluster.local",
            ),
        ),
        (
            JAVA_LOGGED,
            (
                "org.apache.kafka.common.KafkaException: Failed to construct kafka consumer",
                "Caused by: org.apache.kafka.common.config.ConfigException: No resolvable bootstrap urls "
                "given",
            ),
        ),
        (GO_PANIC, ("panic: runtime error: invalid memory address or nil pointer dereference",)),
        (GO_FATAL, ("fatal error: concurrent map writes",)),
        (
            LOGFMT,
            ("opening storage failed: lock DB directory: open /prometheus/lock: permission denied",),
        ),
        (
            LOGFMT_MSG_AND_ERR,
            ("failed to start HTTP server: listen tcp :9090: bind: address already in use",),
        ),
        (
            JSON_ZAP,
            ('unable to start manager: no matches for kind "Certificate" in version "cert-manager.io/v1"',),
        ),
        (JSON_SEVERITY, ("cannot read /etc/payments/keys.json: no such file or directory",)),
        (NODE, ('TypeError: PORT must be a number, got "http"',)),
        (
            RUST,
            (
                "thread 'main' panicked at src/config.rs:22:10: called `Result::unwrap()` on an `Err` "
                'value: Os { code: 2, kind: NotFound, message: "No such file" }',
            ),
        ),
        (
            KLOG,
            (
                'E1009 21:57:59.000002       1 run.go:74] "command failed" err="failed to load kubeconfig: '
                'no such file"',
            ),
        ),
        (
            PLAIN,
            ('nginx: [emerg] host not found in upstream "api:8080" in /etc/nginx/conf.d/default.conf:4',),
        ),
        (
            PLAIN_LEVEL,
            ("2025-10-09 21:57:58,230 ERROR [main] Could not bind to 0.0.0.0:5432: Address in use",),
        ),
    ],
    ids=[
        "python",
        "python-chained",
        "java",
        "java-logged",
        "go-panic",
        "go-fatal",
        "logfmt-err",
        "logfmt-msg-err",
        "json-zap",
        "json-severity",
        "node",
        "rust",
        "klog",
        "nginx",
        "plain-level",
    ],
)
def test_quote_error_names_the_error(log: str, expected: tuple[str, ...]) -> None:
    quote = quote_error(log.splitlines())
    assert quote.named
    assert quote.lines == expected
    assert quote.headline == expected[-1]


def test_the_traceback_header_is_never_the_quote() -> None:
    # A traceback cut off by the log tail: no exception line, so no "Traceback (most recent...)".
    lines = ["Traceback (most recent call last):", '  File "/app/x.py", line 3, in <module>']
    quote = quote_error(lines)
    assert "Traceback" not in quote.headline or not quote.named


def test_a_named_error_beats_a_later_plain_line_and_the_last_named_wins() -> None:
    lines = [
        'level=error msg="retry 1 failed" err="dial tcp 10.0.0.9:5672: connect: connection refused"',
        "panic: amqp: channel closed",
        "goroutine 7 [running]:",
        "ERROR while dumping goroutines",
    ]
    assert quote_error(lines).headline == "panic: amqp: channel closed"


def test_without_an_error_line_the_last_lines_are_quoted() -> None:
    quote = quote_error(NOTHING.splitlines())
    assert not quote.named
    assert quote.lines == ("starting worker 3", "connecting to queue", "giving up")
    assert quote_error([]).lines == () and quote_error([]).headline == ""


@pytest.mark.parametrize(
    "line",
    [
        '{"level":"info","msg":"error budget is 99.9%"}',  # info record mentioning "error"
        'level=warn msg="could not refresh token" err="timeout"',
        "GET /api/errors 200 12ms",
        "main.(*Reconciler).handleError(0x0)",
        "    at Object.<anonymous> (/app/x.js:1:1)",
    ],
)
def test_lines_that_only_mention_errors_are_not_named(line: str) -> None:
    assert not quote_error([line]).named


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (ContainerState("terminated", reason="Error", exit_code=1), "exit code 1 (Error)"),
        (
            ContainerState("terminated", reason="OOMKilled", exit_code=137),
            "exit code 137 (OOMKilled, SIGKILL)",
        ),
        (ContainerState("terminated", exit_code=139), "exit code 139 (SIGSEGV)"),
        (ContainerState("running"), ""),
        (None, ""),
    ],
)
def test_describe_exit(state: ContainerState | None, expected: str) -> None:
    assert describe_exit(state) == expected


def test_crash_loop_quotes_the_exception_line_with_exit_code_and_reason() -> None:
    from handlers import crash_loop
    from handlers.base import Settings
    from tests.support.kube import container, make_evidence, pod, terminated, waiting

    objects = [
        pod(
            "ledger-7f9c-x2v",
            "billing",
            labels={"app.kubernetes.io/name": "ledger"},
            owner=("ReplicaSet", "ledger-7f9c"),
            containers=[container("ledger", "ghcr.io/acme/ledger:4.1")],
            statuses=[waiting("ledger", "CrashLoopBackOff", restarts=9, last=terminated(exit_code=1))],
        )
    ]
    logs = {("billing", "ledger-7f9c-x2v", "ledger", True): PYTHON.splitlines()}
    [finding] = crash_loop.diagnose(make_evidence(objects, logs=logs), Settings())
    assert finding.summary.endswith("exit code 1 (Error): ValueError: DATABASE_URL is not set")
    assert "previous log: ValueError: DATABASE_URL is not set" in finding.evidence
    assert not any("Traceback" in line for line in finding.evidence)

    # No previous log kept: the current one (the crashed run while it waits) is quoted instead.
    logs = {("billing", "ledger-7f9c-x2v", "ledger", False): GO_PANIC.splitlines()}
    [finding] = crash_loop.diagnose(make_evidence(objects, logs=logs), Settings())
    assert finding.summary.endswith("panic: runtime error: invalid memory address or nil pointer dereference")
