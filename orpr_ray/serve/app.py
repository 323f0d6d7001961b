"""The Ray Serve application: a FastAPI ingress over replicas that each hold one copy of the policy.

Routes (docs/SERVING.md): ``POST /v1/decide`` (one unit; concurrent calls share a forward pass
through ``@serve.batch``), ``POST /v1/decide/batch`` (many units, one call, forward passes in
chunks), ``GET /healthz``, ``GET /v1/model``, OpenAPI at ``/docs``.

Start it with ``orpr serve --checkpoint DIR``, ``serve run orpr_ray.serve.app:build_app
checkpoint=DIR`` or ``serve deploy jobs/serve_config.yaml``. Nothing runs at import time.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime
through the signature ``serve.ingress`` rewrites, where postponed (string) annotations are not
resolved and a request body silently becomes a query parameter.
"""
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter, ValidationError
from ray import serve
from ray.serve import Application
from starlette.exceptions import HTTPException as StarletteHTTPException

from orpr_ray import __version__
from orpr_ray.config import OrprConfig, load_config
from orpr_ray.core.errors import ConfigError, InputError
from orpr_ray.core.schema import Strict
from orpr_ray.model.checkpoint import checkpoint_file
from orpr_ray.serve.config import ServeConfig
from orpr_ray.serve.engine import DecisionEngine
from orpr_ray.serve.schemas import (MAX_BODY_BYTES, BatchRequest, BatchResponse, DecideResponse, ErrorResponse,
                                    Health, UnitRequest, field_path)

APP_NAME = "orpr"
JSON_BYTES = TypeAdapter(dict)  # plain dicts to JSON bytes in one pydantic-core call
_ERRORS = {422: {"model": ErrorResponse, "description": "invalid request; every problem names its field"},
           413: {"model": ErrorResponse, "description": f"body larger than {MAX_BODY_BYTES} bytes"}}

api = FastAPI(title="orpr replenishment decisions", version=__version__,
              description="Inventory-days targets and today's order quantities from the ORPR policy.")


def _error(status: int, items: list[dict]) -> JSONResponse:
    first = items[0]
    return JSONResponse(status_code=status, content={
        "error": f"{first['field']}: {first['message']}" + (f" ({first['where']})" if first.get("where") else ""),
        "detail": items})


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field; the offending input is echoed only when it is a short scalar."""
    items = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":  # loc is ('body', character position)
            items.append({"field": "body", "message": f"not valid JSON at character {err['loc'][-1]}: "
                                                      f"{err.get('ctx', {}).get('error', err.get('msg'))}"})
            continue
        value = err.get("input")
        shown = f" (got {value!r})" if isinstance(value, (int, float, str, bool)) and len(repr(value)) < 80 else ""
        items.append({"field": field_path(err.get("loc", ())), "message": f"{err.get('msg', 'invalid')}{shown}"})
    return _error(422, items)


@api.exception_handler(StarletteHTTPException)
async def _framework_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Errors the framework raises itself (a body that is not UTF-8 or nests too deep, an unknown route,
    a wrong method) in the same shape as every other error, so a client reads one format."""
    response = _error(exc.status_code, [{"field": "body" if exc.status_code == 400 else "path",
                                         "message": str(exc.detail)}])
    response.headers.update(exc.headers or {})
    return response


@api.exception_handler(InputError)
async def _model_input_error(request: Request, exc: InputError) -> JSONResponse:
    """Problems only the model can see (e.g. extra attributes it was not trained with): 422 as well."""
    return _error(422, [{"field": exc.field or "body", "message": exc.problem, "where": exc.where}])


@api.middleware("http")
async def _limit_body(request: Request, call_next):
    """Refuse oversized bodies before they are read and parsed."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return _error(413, [{"field": "body", "message": f"{length} bytes; the limit is {MAX_BODY_BYTES}"}])
    return await call_next(request)


@serve.deployment
@serve.ingress(api)
class DecisionService:
    """One replica: loads the checkpoint once and answers every route from it."""

    def __init__(self, checkpoint: str, settings: dict):
        cfg = ServeConfig.model_validate(settings["serve"])
        torch.set_num_threads(cfg.torch_threads)  # replicas share the machine's cores with the proxy
        self.engine = DecisionEngine.load(checkpoint, demand_window_days=settings["demand_window_days"],
                                          top_k=cfg.top_k, chunk_units=cfg.chunk_units)
        self.info = self.engine.info()
        self.batching = cfg.batching
        self.decide_shared.set_max_batch_size(cfg.max_batch_size)
        self.decide_shared.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    @api.get("/healthz", response_model=Health)
    def healthz(self) -> dict:
        return {"status": "ok", "model_version": self.engine.version}

    @api.get("/v1/model")
    def model(self) -> dict:
        """Model version, grid, network config, known vocabularies and training provenance (manifests)."""
        return self.info

    @api.post("/v1/decide", response_model=DecideResponse, responses=_ERRORS)
    async def decide(self, unit: UnitRequest) -> dict:
        """One unit; concurrent requests share one forward pass when batching is on."""
        answer = await self.decide_shared(unit) if self.batching else self.engine.decide([unit])[0]
        if isinstance(answer, InputError):
            raise answer
        return {**answer, "model_version": self.engine.version}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def decide_shared(self, units: list[UnitRequest]) -> list[dict | InputError]:
        """Concurrent single requests in one forward pass; a unit the model refuses fails alone."""
        try:
            return self.engine.decide(units)
        except InputError:
            return [self._decide_alone(unit) for unit in units]

    def _decide_alone(self, unit: UnitRequest) -> dict | InputError:
        try:
            return self.engine.decide([unit])[0]
        except InputError as exc:
            return exc

    @api.post("/v1/decide/batch", response_model=BatchResponse, responses=_ERRORS)
    def decide_batch(self, body: BatchRequest) -> Response:
        """Many units in one call (a nightly run); forward passes of ``chunk_units`` units.

        A plain ``def``: FastAPI runs it in a worker thread, so health checks are answered meanwhile.
        """
        decisions = self.engine.decide(body.units)
        # Serialised here in one Rust call: FastAPI's generic path (validate the dict against the
        # response model, convert, json.dumps) costs ~15x more for thousands of decisions.
        return Response(JSON_BYTES.dump_json({"model_version": self.engine.version, "count": len(decisions),
                                                "decisions": decisions}), media_type="application/json")


class AppArgs(Strict):
    """Arguments of ``serve run orpr_ray.serve.app:build_app checkpoint=DIR [config=FILE]``."""

    checkpoint: str
    config: str | None = None
    overrides: list[str] = []


def application(checkpoint: str | Path, cfg: OrprConfig) -> Application:
    """The bound application (not yet running); a missing checkpoint fails here, before any replica starts."""
    checkpoint_file(checkpoint)
    s = cfg.serve
    settings = {"serve": s.model_dump(mode="json"), "demand_window_days": cfg.sim.demand_window_days}
    return DecisionService.options(num_replicas=s.replicas, max_ongoing_requests=s.max_ongoing_requests,
                                   ray_actor_options={"num_cpus": s.replica_cpus}).bind(
        str(Path(checkpoint).resolve()), settings)


def build_app(args: dict) -> Application:
    """Application builder for ``serve run`` / ``serve deploy`` (args: checkpoint, config, overrides)."""
    try:
        spec = AppArgs.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(first["msg"], field=field_path(first["loc"]), where="application arguments") from exc
    return application(spec.checkpoint, load_config(spec.config, spec.overrides))


def run_service(checkpoint: str | Path, cfg: OrprConfig, *, blocking: bool = False):
    """Start Serve's HTTP proxy on ``serve.host:serve.port`` and deploy the application on the current Ray."""
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    return serve.run(application(checkpoint, cfg), name=APP_NAME, route_prefix="/", blocking=blocking)
