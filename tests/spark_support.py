"""Spark for the tests (issues 15, 29): one SparkSession per test process, and a real cluster.

Every Spark test is in the xdist group ``spark`` (``--dist loadgroup``), so a parallel run
starts one driver JVM, not one per worker: the tests of this module's users are marked
``SPARK``, and any test parametrized with ``engine="spark"`` (the engine-agreement and
semantics tests) gets the mark and the ``spark`` fixture here. Without the ``spark``
extra those tests are skipped.

The session runs on ``spark_master``: ``local[2]`` (driver and executors in one JVM), or,
when a test module parametrizes it with ``CLUSTER``, a standalone cluster started here
from the installed pyspark's ``spark-class`` (a master and two 1-core workers in their own
JVMs and process groups, with their own work dirs, on free 127.0.0.1 ports), stopped by
process group at the end of the session. Switching master stops the session and starts
another; pytest orders session-parametrized tests so that happens once per master.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SPARK = pytest.mark.xdist_group("spark")
#: ``spark_master``'s parameter for the standalone cluster (the tests of ``-m cluster``).
CLUSTER = pytest.param("cluster", marks=pytest.mark.cluster, id="cluster")
#: ... for a Spark Connect server (``sc://``), marked ``cluster`` too.
CONNECT = pytest.param("connect", marks=pytest.mark.cluster, id="connect")
LOCAL = pytest.param("local[2]", id="local")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runcluster",
        action="store_true",
        help="also run the Spark tests on a standalone cluster (marked cluster; scripts/test does)",
    )


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="cluster: run with --runcluster")
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if params.get("engine") == "spark":
            item.add_marker(SPARK)
            if "spark" not in item.fixturenames:  # type: ignore[attr-defined]
                item.fixturenames.append("spark")  # type: ignore[attr-defined]
        if params.get("spark_master") in ("cluster", "connect"):
            # its own group, so that a parallel run can give the cluster set a worker
            # of its own beside the local[2] set (a driver JVM each)
            item.add_marker(pytest.mark.xdist_group("spark-cluster"))
            if not config.getoption("--runcluster"):
                item.add_marker(skip)
        _group_nodeid(config, item)


def _group_nodeid(config: pytest.Config, item: pytest.Item) -> None:
    """xdist's ``loadgroup`` groups by a ``@group`` suffix of the node id, which it sets
    through ``item._nodeid``; pytest 9.2 keeps node ids in ``item._id`` instead, so the
    suffix is set here (a no-op where xdist's own still works)."""
    mark = item.get_closest_marker("xdist_group")
    if not getattr(config.option, "loadgroup", False) or mark is None or "@" in item.nodeid:
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # pytest before 9.2: xdist sets the suffix itself
        return
    name = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
    item._id = coerce_node_id(f"{item.nodeid}@{name}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SparkCluster:
    """A standalone master and its workers, each JVM in its own process group."""

    def __init__(self, root: Path, cores: int = 1, memory: str = "1g") -> None:
        import pyspark

        self.home = Path(pyspark.__file__).parent
        self.root = root
        self.cores, self.memory = cores, memory
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.workers = 0  # started so far (names stay unique after a kill)
        self.env = {
            **os.environ,
            "SPARK_HOME": str(self.home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": "256m",  # the master and worker daemons, not executors
            "PYSPARK_PYTHON": sys.executable,
            # Executors in another zone than the driver: a rule that leans on the JVM's
            # zone instead of the session's (Asia/Shanghai) shows on the cluster.
            "TZ": "America/Sao_Paulo",
        }
        self.ui_port = free_port()
        self.url = f"spark://127.0.0.1:{free_port()}"
        self._start(
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1]),
            *("--webui-port", str(self.ui_port)),
        )

    def _start(self, name: str, cls: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [str(self.home / "bin" / "spark-class"), cls, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the executors it forks die with it
        )
        log.close()

    def add_worker(self) -> str:
        self.workers += 1
        name = f"worker{self.workers}"
        work = self.root / name
        work.mkdir()
        self._start(
            name,
            "org.apache.spark.deploy.worker.Worker",
            *("--host", "127.0.0.1", "--port", str(free_port())),
            *("--webui-port", str(free_port()), "--work-dir", str(work)),
            *("--cores", str(self.cores), "--memory", self.memory, self.url),
        )
        return name

    def alive_workers(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as res:
            state = json.load(res)
        return sum(w.get("state") == "ALIVE" for w in state.get("workers", []))

    def wait_for_workers(self, n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = (self.root / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"spark {name} exited with {proc.returncode}:\n{log}")
            try:
                if self.alive_workers() >= n:
                    return
            except OSError:  # the master's UI is not up yet
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} spark workers not registered after {timeout} s")
            time.sleep(0.5)

    def kill(self, name: str) -> None:
        """Kill a daemon and whatever it started (its executors), at once."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def stop(self) -> None:
        for name in sorted(self.procs, reverse=True):  # workers before the master
            proc = self.procs[name]
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    cluster = SparkCluster(tmp_path_factory.mktemp("spark-cluster"))
    try:
        cluster.add_worker()
        cluster.add_worker()
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.stop()


class ConnectServer:
    """The Spark Connect server the pyspark package ships (what ``sbin/start-connect-server.sh``
    runs), in ``local[2]``, in its own JVM and process group."""

    def __init__(self, root: Path) -> None:
        import pyspark

        home = Path(pyspark.__file__).parent
        port = free_port()
        self.url = f"sc://127.0.0.1:{port}"
        self.log = root / "connect.log"
        env = {
            **os.environ,
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_CONNECT_MODE": "0",  # the server itself is a classic driver
            "TZ": "America/Sao_Paulo",  # not the client's zone (see SparkCluster)
        }
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(home / "bin" / "spark-submit"),
                    *("--class", "org.apache.spark.sql.connect.service.SparkConnectServer"),
                    *("--name", "userportrait-tests-connect", "--master", "local[2]"),
                    *("--driver-memory", "1g", "--conf", "spark.ui.enabled=false"),
                    *("--conf", f"spark.connect.grpc.binding.port={port}"),
                    *("--conf", "spark.connect.grpc.binding.address=127.0.0.1"),
                    *("--conf", f"spark.sql.warehouse.dir={root / 'warehouse'}"),
                ],
                env=env,
                cwd=root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while b"Spark Connect server started" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the Spark Connect server did not start:\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="session")
def spark_connect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectServer]:
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    pytest.importorskip("grpc", reason="the Spark Connect client (pyspark[connect]) is missing")
    server = ConnectServer(tmp_path_factory.mktemp("spark-connect"))
    try:
        server.wait()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spark_master(request: pytest.FixtureRequest) -> str:
    """``local[2]``, or the cluster's (the Connect server's) URL when a test is
    parametrized with ``CLUSTER`` (``CONNECT``)."""
    param = getattr(request, "param", "local[2]")
    if param == "cluster":
        cluster: SparkCluster = request.getfixturevalue("spark_cluster")
        return cluster.url
    if param == "connect":
        server: ConnectServer = request.getfixturevalue("spark_connect")
        return server.url
    return str(param)


@pytest.fixture(scope="session")
def spark(spark_master: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    from pyspark.sql import SparkSession

    from userportrait.settings import Settings
    from userportrait.spark.session import SQL_CONF, spark_session

    if spark_master.startswith("sc://"):
        # The product's own way in (the server owns the static settings).
        conf = "spark.sql.shuffle.partitions=2"
        remote = spark_session(Settings(spark_master=spark_master, spark_conf=conf))
        yield remote
        remote.stop()
        # pyspark marks the process as a Connect client; a later classic session needs it gone
        os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
        return
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    builder = (
        SparkSession.builder.master(spark_master)
        .appName("userportrait-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.memory", "1g")
        .config("spark.sql.adaptive.enabled", "true")
    )
    if spark_master.startswith("spark://"):
        builder = (
            builder.config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.executor.memory", "512m")
            .config("spark.executor.cores", "1")
        )
    for key, value in SQL_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
