"""`scenetune dashboard`: a read-only local web app over a results folder, and `scenetune report`:
the same pages as one self-contained HTML file. Starlette serves the pages; plotly.js, shipped by
the `plotly` package, draws the charts; everything is served locally, so no network is needed."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from analysis.payloads import (
    REPLICATION_STATE_FILE,
    PayloadCache,
    discover,
    experiment_payload,
    home_payload,
    importance_payload,
    relative_id,
    replication_entry,
)
from analysis.results import STATUSES, load_experiment
from scenetune.experiment import is_experiment_dir

IMPORTANCE_CACHE_SIZE = 64
IMPORTANCE_REFRESH_S = 30.0

TEMPLATES = Environment(autoescape=select_autoescape(default=True, default_for_string=True))

PAGE = TEMPLATES.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} · scenetune</title>
{% if inline %}<style>{{ css }}</style><script>{{ plotly_js | safe }}</script>
{% else %}<link rel="stylesheet" href="/static/dashboard.css"><script src="/static/plotly.min.js"></script>{% endif %}
</head>
<body data-page="{{ page }}" data-experiment="{{ experiment_id }}">
<header><a href="{{ home_link }}">scenetune</a> · {{ title }}</header>
<main>
{{ body | safe }}
</main>
{% if inline %}{{ data_script | safe }}<script>{{ dashboard_js | safe }}</script>
{% else %}<script src="/static/dashboard.js"></script>{% endif %}
</body></html>"""
)

HOME_BODY = TEMPLATES.from_string(
    """<section data-section="home">
<h1>Experiments under {{ root }}</h1>
<div data-role="experiments">Loading…</div>
<h2>Studies</h2>
<div data-role="studies">Loading…</div>
<h2>Replications of the study</h2>
<div data-role="replications">Loading…</div>
</section>"""
)

EXPERIMENT_BODY = TEMPLATES.from_string(
    """<section id="{{ section_id }}" data-experiment-section="{{ experiment_id }}">
<h1>{{ experiment_id }}</h1>
<div data-role="summary"></div>
<h2>Trials</h2>
<label>Status <select data-role="status-filter"><option value="">all</option>
{% for status in statuses %}<option value="{{ status }}">{{ status }}</option>{% endfor %}</select></label>
<p>Click a column to sort; tick trials to highlight them in the charts.</p>
<div data-role="trials"></div>
<h2>Learning curves</h2>
<div class="charts"><div class="chart" data-role="chart-accuracy"></div><div class="chart" data-role="chart-loss"></div></div>
<h2>Accuracy against each hyperparameter</h2>
<div class="charts" data-role="param-charts"></div>
<h2>Parallel coordinates and importance</h2>
<div class="charts"><div class="chart" data-role="chart-parallel"></div><div class="chart" data-role="chart-importance"></div></div>
<h2>Best configuration</h2>
<div data-role="best"></div>
</section>"""
)


def _asset(name: str) -> str:
    return resources.files("analysis").joinpath("web", name).read_text()


def plotly_js() -> str:
    return resources.files("plotly").joinpath("package_data", "plotly.min.js").read_text()


def resolve_experiment(root: Path, experiment_id: str) -> Path:
    """The experiment folder named by a URL path, only if it lies inside root; else 404."""
    return _resolve(root, experiment_id, is_experiment_dir)


def resolve_replication(root: Path, replication_id: str) -> Path:
    return _resolve(root, replication_id, lambda path: (path / REPLICATION_STATE_FILE).is_file())


def _resolve(root: Path, folder_id: str, is_kind: Callable[[Path], bool]) -> Path:
    """The folder of the kind `is_kind` accepts named by a URL path, only if it lies inside root; else 404.

    Links are resolved first, so a link (or `..`, encoded or not) leading outside root never serves.
    """
    if not folder_id or folder_id.startswith("/") or "\\" in folder_id or "\0" in folder_id:
        raise HTTPException(404)
    try:
        candidate = (root / folder_id).resolve()
        found = candidate.is_relative_to(root.resolve()) and is_kind(candidate)
    except (OSError, ValueError):  # a name too long for the file system, or one it cannot hold
        raise HTTPException(404) from None
    if not found:
        raise HTTPException(404)
    return candidate


def importance_signature(payload: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What importance depends on: each trial and its score."""
    return tuple((trial["trial_id"], trial["val_acc"]) for trial in payload["trials"])


@dataclass(frozen=True)
class _Importance:
    signature: tuple[tuple[str, Any], ...]
    value: dict[str, Any] | None
    trials: int
    finished_at: float


class ImportanceCache:
    """Importance is costly (fANOVA fits forests: tens of seconds over a few hundred trials on 2 cores).
    It is computed in one background thread, again only when the scored trials changed and at most once
    per IMPORTANCE_REFRESH_S per experiment; polls meanwhile show the last one computed, with the number
    of trials it is from. So no poll waits for it (the first polls answer without it), and an open page
    during a sweep takes a small share of one core from the trials instead of recomputing on every poll."""

    def __init__(self) -> None:
        self.shown: dict[str, _Importance] = {}
        self.computing: dict[str, Future[_Importance]] = {}
        self.lock = threading.Lock()
        self.jobs: queue.SimpleQueue[tuple[Future[_Importance], Path, tuple]] = queue.SimpleQueue()
        # A daemon thread: stopping the dashboard does not wait for a computation nobody will see.
        threading.Thread(target=self._work, name="scenetune-importance", daemon=True).start()

    def payload(self, root: Path, path: Path, payloads: PayloadCache | None = None) -> dict[str, Any]:
        compute = partial(experiment_payload, root, path, with_importance=False)
        payload = dict(payloads.get("experiment_page", path, compute) if payloads is not None else compute())
        self.refresh(path, importance_signature(payload))
        shown = self.shown.get(str(path))  # none yet on the first polls: the chart appears when it is done
        payload["importance"] = shown.value if shown else None
        payload["importance_trials"] = shown.trials if shown else None
        return payload

    def refresh(self, path: Path, signature: tuple) -> Future[_Importance] | None:
        """The computation under way for path, started here when the shown one is stale and due; None
        when none runs."""
        key = str(path)
        with self.lock:
            shown, running = self.shown.get(key), self.computing.get(key)
            if running is not None:
                return running
            stale = shown is None or shown.signature != signature
            due = shown is None or time.monotonic() - shown.finished_at >= IMPORTANCE_REFRESH_S
            if not (stale and due):
                return None
            if len(self.shown) >= IMPORTANCE_CACHE_SIZE:
                self.shown.clear()
            future: Future[_Importance] = Future()
            self.computing[key] = future
            self.jobs.put((future, path, signature))
            return future

    def _work(self) -> None:
        while True:
            future, path, signature = self.jobs.get()
            try:
                future.set_result(self._compute(path, signature))
            except Exception as error:  # handed to the poll that waits for it, if any
                future.set_exception(error)

    def _compute(self, path: Path, signature: tuple) -> _Importance:
        try:
            experiment = load_experiment(path)
            computed = _Importance(
                signature, importance_payload(experiment), len(experiment.scored_trials()), time.monotonic()
            )
            with self.lock:
                self.shown[str(path)] = computed
            return computed
        finally:  # also when it failed (a folder removed meanwhile): the next poll may start another
            with self.lock:
                self.computing.pop(str(path), None)


def render_home(root: Path) -> str:
    return _live_page("experiments", "home", "", HOME_BODY.render(root=str(root)))


def _live_page(title: str, page: str, item_id: str, body: str) -> str:
    """A dashboard page served live (its script polls the server); `item_id` names what it shows."""
    return PAGE.render(title=title, page=page, experiment_id=item_id, home_link="/", inline=False, body=body)


def render_replication(replication_id: str) -> str:
    body = '<section data-section="replication"><div data-role="replication">Loading…</div></section>'
    return _live_page(replication_id, "replication", replication_id, body)


def render_experiment(experiment_id: str) -> str:
    body = EXPERIMENT_BODY.render(section_id="experiment", experiment_id=experiment_id, statuses=STATUSES)
    return _live_page(experiment_id, "experiment", experiment_id, body)


# The Host names a browser may use for a dashboard on the loopback interface. Any other Host is refused,
# so a web page whose domain is rebound to 127.0.0.1 (DNS rebinding) cannot read the results.
LOOPBACK_HOST_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def create_app(root: Path, allowed_hosts: Sequence[str] = LOOPBACK_HOST_NAMES) -> Starlette:
    """The dashboard over root; requests whose Host is not in allowed_hosts ("*": any) get 400."""
    root = Path(root).resolve()
    cache = ImportanceCache()
    payloads = PayloadCache()
    static = {
        "dashboard.js": ("text/javascript", lambda: _asset("dashboard.js")),
        "dashboard.css": ("text/css", lambda: _asset("dashboard.css")),
        "plotly.min.js": ("text/javascript", plotly_js),
    }

    async def home(request: Request) -> Response:
        return HTMLResponse(render_home(root))

    async def experiment(request: Request) -> Response:
        path = resolve_experiment(root, request.path_params["experiment"])
        return HTMLResponse(render_experiment(relative_id(root, path)))

    async def replication(request: Request) -> Response:
        path = resolve_replication(root, request.path_params["replication"])
        return HTMLResponse(render_replication(relative_id(root, path)))

    async def api_replication(request: Request) -> Response:
        path = resolve_replication(root, request.path_params["replication"])
        return JSONResponse(payloads.get("replication", path, partial(replication_entry, root, path)))

    async def api_home(request: Request) -> Response:
        return JSONResponse(home_payload(root, payloads))

    async def api_experiment(request: Request) -> Response:
        path = resolve_experiment(root, request.path_params["experiment"])
        return JSONResponse(await run_in_threadpool(cache.payload, root, path, payloads))

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            raise HTTPException(404)
        media_type, read = static[name]
        return Response(read(), media_type=media_type)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/", home),
            Route("/experiment/{experiment:path}", experiment),
            Route("/api/home", api_home),
            Route("/api/experiment/{experiment:path}", api_experiment),
            Route("/replication/{replication:path}", replication),
            Route("/api/replication/{replication:path}", api_replication),
            Route("/static/{name}", asset),
            Route("/favicon.ico", favicon),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))],
    )


def script_safe_json(value: Any) -> str:
    """JSON to inline in a <script> element: `<`, `>` and `&` as \\u escapes, so no text from the data
    (`</script>`, `<!--<script>`) can end the element or change how the browser parses it."""
    text = json.dumps(value, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _experiments_of(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if is_experiment_dir(path):
            found.append(path)
        else:
            found.extend(discover(path)[0])
    return found


def build_report(paths: list[Path]) -> str:
    """One HTML file with plotly.js, the script and every payload inlined: it opens offline."""
    paths = [Path(p).resolve() for p in paths]
    root = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
    experiments = _experiments_of(paths)
    home = {"experiments": [], "studies": [], "replications": []}
    for path in paths:
        if not is_experiment_dir(path):
            found = home_payload(path, with_experiments=False)
            home["studies"] += found["studies"]
            home["replications"] += found["replications"]
    payloads = {}
    for path in experiments:
        payload = experiment_payload(root, path)
        payloads[payload["summary"]["id"]] = payload
        home["experiments"].append(payload["summary"])
    order = list(payloads)
    sections = [HOME_BODY.render(root=str(root))]
    sections += [
        EXPERIMENT_BODY.render(section_id=f"section-{i}", experiment_id=eid, statuses=STATUSES)
        for i, eid in enumerate(order)
    ]
    data = script_safe_json({"home": home, "experiments": payloads, "order": order})
    return PAGE.render(
        title="report",
        page="report",
        experiment_id="",
        home_link="#",
        inline=True,
        css=_asset("dashboard.css"),
        plotly_js=plotly_js().replace("</script", "<\\/script"),
        dashboard_js=_asset("dashboard.js"),
        data_script=f'<script type="application/json" id="report-data">{data}</script>',
        body="\n".join(sections),
    )
