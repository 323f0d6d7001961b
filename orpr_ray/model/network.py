"""The ORPR network: three Transformer streams, learned fusion, a sales head and a VAE-logits decision head.

Plain torch, no Ray. Shapes: B = batch, T = history days, H = horizon days, P = sales tokens
(weekly patches), A = attributes, O = objectives, G = targets in the inventory-days grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from orpr_ray.model.config import ModelConfig, StreamConfig
from orpr_ray.model.features import BASE_ATTRIBUTES, DAY_CHANNELS, OBJECTIVES, Features

# Parameter groups the training stages freeze and unfreeze.
PARTS = ("encoders", "sales_head", "decision_head")
LOGVAR_LIMIT = 8.0  # clamp of the latent log-variance: keeps exp() finite early in training


class NumericTokens(nn.Module):
    """One token per scalar feature: ``value * w_i + b_i`` when present, a learned ``missing_i`` when not."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, dim))
        self.bias = nn.Parameter(torch.empty(n, dim))
        self.missing = nn.Parameter(torch.empty(n, dim))

    def forward(self, values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        # values, present: (B, n) -> (B, n, dim)
        tokens = values.unsqueeze(-1) * self.weight + self.bias
        return torch.where(present.unsqueeze(-1), tokens, self.missing.expand_as(tokens))


class StreamEncoder(nn.Module):
    """Tokens (B, S, dim) -> pre-norm TransformerEncoder -> mean over tokens (B, dim)."""

    def __init__(self, cfg: StreamConfig, dropout: float):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=cfg.dim, nhead=cfg.heads, dim_feedforward=cfg.ff_dim,
                                           dropout=dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.encoder(tokens)).mean(dim=1)


class SalesTokens(nn.Module):
    """Per-day channels (B, T + H, C) -> patches of ``patch_days`` days (B, P, dim) with positions.

    History is left-padded and the horizon right-padded to whole patches, so no patch mixes known
    sales with days ahead.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.patch = cfg.patch_days
        self.pad_front = -cfg.history_days % cfg.patch_days
        self.pad_back = -cfg.horizon_days % cfg.patch_days
        n_tokens = (cfg.history_days + self.pad_front + cfg.horizon_days + self.pad_back) // cfg.patch_days
        self.project = nn.Linear(cfg.patch_days * len(DAY_CHANNELS), cfg.sales.dim)
        self.position = nn.Parameter(torch.empty(n_tokens, cfg.sales.dim))

    def forward(self, days: torch.Tensor) -> torch.Tensor:
        padded = F.pad(days, (0, 0, self.pad_front, self.pad_back))  # (B, P * patch, C)
        batch, length, channels = padded.shape
        patches = padded.reshape(batch, length // self.patch, self.patch * channels)
        return self.project(patches) + self.position


class OrprNet(nn.Module):
    """Forward returns named outputs; ``sample=False`` (the default) is the deterministic path z = mu."""

    def __init__(self, cfg: ModelConfig, *, grid_size: int, n_extra_numeric: int = 0,
                 n_extra_categorical: int = 0):
        super().__init__()
        self.cfg = cfg
        self.grid_size = grid_size
        a_dim, o_dim, s_dim, fused = cfg.attributes.dim, cfg.objectives.dim, cfg.sales.dim, cfg.fused_dim
        # Encoders (the "encoders" part: tokenisers, streams and fusion).
        self.sales_tokens = SalesTokens(cfg)
        self.category = nn.Embedding(cfg.category_buckets, a_dim)
        self.dc = nn.Embedding(cfg.dc_buckets, a_dim)
        # Text extra attributes: one table, column k owns rows [k * extra_buckets, (k + 1) * extra_buckets).
        self.extra = nn.Embedding(n_extra_categorical * cfg.extra_buckets, a_dim)
        self.register_buffer("extra_offset", torch.arange(n_extra_categorical) * cfg.extra_buckets,
                             persistent=False)
        self.attribute_tokens = NumericTokens(len(BASE_ATTRIBUTES) + n_extra_numeric, a_dim)
        self.objective_tokens = NumericTokens(len(OBJECTIVES), o_dim)
        self.sales_stream = StreamEncoder(cfg.sales, cfg.dropout)
        self.attribute_stream = StreamEncoder(cfg.attributes, cfg.dropout)
        self.objective_stream = StreamEncoder(cfg.objectives, cfg.dropout)
        self.project = nn.ModuleList([nn.Linear(s_dim, fused), nn.Linear(a_dim, fused), nn.Linear(o_dim, fused)])
        self.stream_logits = nn.Parameter(torch.zeros(3))  # learned fusion weights (softmax over streams)
        self.fuse = nn.Sequential(nn.LayerNorm(fused), nn.Linear(fused, fused), nn.GELU())
        # Sales head: scaled daily demand for the H days ahead.
        self.sales_head = nn.Sequential(nn.Linear(fused, cfg.head_hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                                        nn.Linear(cfg.head_hidden, cfg.horizon_days))
        # Decision head: q(z | state) and logits over the grid decoded from (z, state).
        self.latent = nn.Linear(fused, 2 * cfg.latent_dim)
        self.decoder = nn.Sequential(nn.Linear(cfg.latent_dim + fused, cfg.head_hidden), nn.GELU(),
                                     nn.Dropout(cfg.dropout), nn.Linear(cfg.head_hidden, cfg.head_hidden),
                                     nn.GELU(), nn.Linear(cfg.head_hidden, grid_size))

    def part_modules(self, part: str) -> list[nn.Module | nn.Parameter]:
        """The modules (and loose parameters) of one of PARTS."""
        if part == "sales_head":
            return [self.sales_head]
        if part == "decision_head":
            return [self.latent, self.decoder]
        if part == "encoders":
            return [self.sales_tokens, self.category, self.dc, self.extra, self.attribute_tokens,
                    self.objective_tokens,
                    self.sales_stream, self.attribute_stream, self.objective_stream, self.project,
                    self.stream_logits, self.fuse]
        raise ValueError(f"unknown part {part!r}; parts are {PARTS}")

    def part_parameters(self, part: str) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        for item in self.part_modules(part):
            params.extend([item] if isinstance(item, nn.Parameter) else item.parameters())
        return params

    @property
    def stream_weights(self) -> torch.Tensor:
        """(3,) fusion weights of the sales, attribute and objective streams."""
        return torch.softmax(self.stream_logits, dim=0)

    def encode(self, features: Features) -> torch.Tensor:
        """Fused state (B, fused_dim) of the three streams."""
        sales = self.sales_stream(self.sales_tokens(features["days"]))  # (B, s_dim)
        attr_tokens = torch.cat([self.category(features["category"]).unsqueeze(1),
                                 self.dc(features["dc"]).unsqueeze(1),
                                 self.extra(features["extra_categories"] + self.extra_offset),
                                 self.attribute_tokens(features["attributes"], features["attributes_mask"])],
                                dim=1)  # (B, 2 + K + A, a_dim)
        attributes = self.attribute_stream(attr_tokens)
        objectives = self.objective_stream(self.objective_tokens(features["objectives"],
                                                                 features["objectives_mask"]))  # (B, o_dim)
        streams = torch.stack([proj(x) for proj, x in zip(self.project, (sales, attributes, objectives))],
                              dim=1)  # (B, 3, fused)
        fused = (self.stream_weights[None, :, None] * streams).sum(dim=1)
        return fused + self.fuse(fused)

    def forward(self, features: Features, *, sample: bool = False,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        state = self.encode(features)
        forecast_scaled = self.sales_head(state)  # (B, H), in units of the per-unit scale
        mu, logvar = self.latent(state).chunk(2, dim=-1)  # (B, latent) each
        logvar = logvar.clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)
        if sample:
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
            z = mu + torch.exp(0.5 * logvar) * eps
        else:
            z = mu
        logits = self.decoder(torch.cat([z, state], dim=-1))  # (B, G)
        return {
            "state": state,
            "forecast_scaled": forecast_scaled,
            "forecast": forecast_scaled.clamp(min=0.0) * features["scale"][:, None],  # (B, H) units/day
            "mu": mu,
            "logvar": logvar,
            "z": z,
            "logits": logits,
        }


def init_parameters(model: OrprNet, generator: torch.Generator) -> None:
    """(Re)initialise every parameter from ``generator`` only, so a seed fixes the initial network."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.MultiheadAttention):
                nn.init.xavier_uniform_(module.in_proj_weight, generator=generator)
                nn.init.zeros_(module.in_proj_bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02, generator=generator)
            elif isinstance(module, NumericTokens):
                for param in (module.weight, module.bias, module.missing):
                    nn.init.normal_(param, std=0.02, generator=generator)
            elif isinstance(module, SalesTokens):
                nn.init.normal_(module.position, std=0.02, generator=generator)
        nn.init.zeros_(model.stream_logits)


def build_model(cfg: ModelConfig, *, grid_size: int, n_extra_numeric: int = 0, n_extra_categorical: int = 0,
                seed: int = 0) -> OrprNet:
    model = OrprNet(cfg, grid_size=grid_size, n_extra_numeric=n_extra_numeric,
                    n_extra_categorical=n_extra_categorical)
    init_parameters(model, torch.Generator().manual_seed(seed))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def set_trainable(model: OrprNet, parts: set[str] | tuple[str, ...]) -> None:
    """Train exactly ``parts``: the others get ``requires_grad=False`` and stay in eval mode (no dropout)."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; parts are {PARTS}")
    for part in PARTS:
        trainable = part in parts
        for param in model.part_parameters(part):
            param.requires_grad_(trainable)


def train_mode(model: OrprNet, parts: set[str] | tuple[str, ...]) -> None:
    """``model.train()`` for the trainable parts, eval mode (deterministic) for the frozen ones."""
    model.eval()
    for part in parts:
        for item in model.part_modules(part):
            if isinstance(item, nn.Module):
                item.train()


def target_index(logits: torch.Tensor, quantile: float | None) -> torch.Tensor:
    """(B,) grid index chosen from the logits (B, G): the mode when ``quantile`` is None, else the
    smallest target whose cumulative probability reaches ``quantile`` (0.5 = the median; higher
    quantiles lean towards more stock, which lost-sales penalties usually favour)."""
    if quantile is None:
        return logits.argmax(dim=-1)
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
    return (cdf < quantile).sum(dim=-1).clamp(max=logits.shape[-1] - 1)


# ----------------------------------------------------------------------------------------------
# Losses (named terms, so each is logged).

def forecast_loss(outputs: dict[str, torch.Tensor], target: torch.Tensor, observed: torch.Tensor,
                  scale: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of the scaled daily forecast over observed target days.

    target: (B, H) units/day; observed: (B, H) bool; scale: (B,) the features' per-unit scale.
    Dividing by the unit's scale weighs small and large SKUs alike, as the inputs do.
    """
    error = (outputs["forecast_scaled"] - target / scale[:, None]).abs() * observed
    return error.sum() / observed.sum().clamp(min=1)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """(B,) KL( N(mu, exp(logvar)) || N(0, I) ) summed over latent dimensions."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def soft_targets(label: torch.Tensor, grid_size: int, width: float) -> torch.Tensor:
    """(B, G) target distribution: one-hot when width == 0, else a discretised Gaussian of ``width``
    grid steps around the label (neighbouring targets cost little more, so near misses are cheap)."""
    if width <= 0:
        return F.one_hot(label, grid_size).float()
    steps = torch.arange(grid_size, device=label.device, dtype=torch.float32)
    weights = torch.exp(-0.5 * ((steps[None, :] - label[:, None].float()) / width) ** 2)
    return weights / weights.sum(dim=-1, keepdim=True)


def decision_loss(outputs: dict[str, torch.Tensor], label: torch.Tensor, *, kl_weight: float,
                  label_width: float) -> dict[str, torch.Tensor]:
    """Cross-entropy of the grid logits against the OR label (index into the grid) plus the latent's KL."""
    log_probs = torch.log_softmax(outputs["logits"], dim=-1)  # (B, G)
    ce = -(soft_targets(label, log_probs.shape[-1], label_width) * log_probs).sum(dim=-1).mean()
    kl = kl_to_standard_normal(outputs["mu"], outputs["logvar"]).mean()
    return {"loss": ce + kl_weight * kl, "ce": ce, "kl": kl}
