"""Variable-rate factorized entropy model (Balle et al. 2018) and its bit-exact ANS coder.

One model serves `n_qualities` levels. Level q (0-based; users see q+1, level 1 = smallest file) scales
the latents by a learned positive per-channel gain g_q before rounding: s = round(y * g_q),
y_hat = s / g_q. Each (level, channel) pair has its own factorized cumulative density (one density over
n_qualities * C rows; level q uses rows q*C .. q*C+C-1). Coding never touches floats: `freeze()` turns
the densities into 16-bit integer frequency tables (symbols outside a table go through an escape symbol
plus a varint side stream), so encoder and decoder agree bit for bit on any machine.

Coded layout of one `encode` call: u32 (little endian) number of ANS words, the words (u32 LE), then the
escape side stream: one zig-zag LEB128 varint per escaped symbol (channel-major, raster order) giving its
signed distance beyond the table edge.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .codes import PRECISION, TOTAL, quantize_pmf, zigzag_decode, zigzag_encode
from .errors import ContainerError, InputError, ModelError

N_QUALITIES = 6
MAX_TABLE = 4095  # in-table symbols per (level, channel); the escape makes 4096 entries
TAIL_MASS = 1e-5  # probability left outside the table on each side before 16-bit quantisation
SEARCH_BOUND = float(1 << 20)  # tails are searched within +-2^20 (scaled latent units)
LIKELIHOOD_MIN = 1e-9
FROZEN_VERSION = 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
_FLOAT_CLAMP = 2147483520.0  # largest float32 below 2^31: float latents are clamped here before the int cast

Quality = Union[int, Tensor]


class EntropyModel(nn.Module):
    """Learned per-level gains + factorized prior; after `freeze()` it also encodes/decodes integer symbols.

    `q` is a 0-based level: an int for the whole batch, or a LongTensor of shape (N,) (one level per
    sample).
    """

    def __init__(
        self,
        latent_channels: int = 16,
        n_qualities: int = N_QUALITIES,
        filters: tuple[int, ...] = (3, 3, 3),
        init_scale: float = 10.0,
        gain_range: tuple[float, float] = (0.5, 16.0),
    ) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.n_qualities = n_qualities
        self.filters = tuple(filters)
        gains = np.geomspace(gain_range[0], gain_range[1], n_qualities)
        self.log_gain = nn.Parameter(
            torch.tensor(np.log(gains), dtype=torch.float32)[:, None].repeat(1, latent_channels)
        )
        # Wider initial densities for larger gains: the scaled latents spread proportionally.
        level_scale = np.maximum(1.0, init_scale * gains / gains.max())
        dims = (1, *filters, 1)
        rows = n_qualities * latent_channels
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        n_layers = len(dims) - 1
        for i in range(n_layers):
            per_level = np.log(np.expm1(1.0 / level_scale ** (1.0 / n_layers) / dims[i + 1]))
            init = torch.tensor(np.repeat(per_level, latent_channels), dtype=torch.float32)
            self.matrices.append(nn.Parameter(init[:, None, None].repeat(1, dims[i + 1], dims[i])))
            self.biases.append(nn.Parameter(torch.rand(rows, dims[i + 1], 1) - 0.5))
            if i < n_layers - 1:
                self.factors.append(nn.Parameter(torch.zeros(rows, dims[i + 1], 1)))
        self._frozen: dict[str, Any] | None = None
        self._tables: _Tables | None = None

    # ----------------------------------------------------------------- training side

    def gains(self) -> Tensor:
        """Positive gains, shape (n_qualities, C)."""
        return torch.exp(self.log_gain)

    def forward(self, y: Tensor, q: Quality, ste: bool = False) -> tuple[Tensor, Tensor]:
        """(y_hat, likelihoods) for latents y (N, C, h, w).

        Training: additive uniform noise on y * g_q for the likelihoods; y_hat is the noisy value, or with
        `ste=True` the rounded value with a straight-through gradient (the decoder then sees what it gets at
        inference). Eval: rounding for both.
        """
        n, c, h, w = y.shape
        levels = self._levels(q, n, y.device)
        g = self.gains()[levels][:, :, None, None]
        yq = y * g
        if self.training:
            values = yq + torch.empty_like(yq).uniform_(-0.5, 0.5)
            y_hat = (yq + (torch.round(yq) - yq).detach()) / g if ste else values / g
        else:
            values = torch.round(yq)
            y_hat = values / g
        rows = (levels[:, None] * c + torch.arange(c, device=y.device)).reshape(-1)
        lik = self._likelihood(values.reshape(n * c, 1, h * w), rows)
        return y_hat, lik.reshape(n, c, h, w)

    @staticmethod
    def bits(likelihoods: Tensor) -> Tensor:
        """Total information content in bits (the rate term)."""
        return torch.sum(-torch.log2(likelihoods))

    def _levels(self, q: Quality, n: int, device: torch.device) -> Tensor:
        if isinstance(q, Tensor):
            levels = q.to(device=device, dtype=torch.long).reshape(-1)
            if levels.numel() == 1:
                levels = levels.expand(n)
            if levels.numel() != n:
                raise InputError(f"need one quality level per sample ({n}), got {levels.numel()}")
            if levels.numel() and (int(levels.min()) < 0 or int(levels.max()) >= self.n_qualities):
                raise InputError(f"quality levels must be in 0..{self.n_qualities - 1}")
            return levels
        return torch.full((n,), self._check_level(q), dtype=torch.long, device=device)

    def _check_level(self, q: Any) -> int:
        if isinstance(q, Tensor):
            q = int(q)
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 0 <= int(q) < self.n_qualities:
            raise InputError(f"quality level index must be an int in 0..{self.n_qualities - 1}, got {q!r}")
        return int(q)

    def _logits_cumulative(self, x: Tensor, rows: Tensor) -> Tensor:
        """Monotone logit of the CDF for each row: x (R, 1, M) -> (R, 1, M)."""
        logits = x
        for i, matrix in enumerate(self.matrices):
            logits = torch.matmul(F.softplus(matrix[rows]), logits) + self.biases[i][rows]
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i][rows]) * torch.tanh(logits)
        return logits

    def _likelihood(self, v: Tensor, rows: Tensor) -> Tensor:
        """CDF(v + 1/2) - CDF(v - 1/2), evaluated on the side of the median where it does not cancel."""
        m = v.shape[-1]
        both = self._logits_cumulative(torch.cat([v - 0.5, v + 0.5], dim=-1), rows)
        lower, upper = both[..., :m], both[..., m:]
        sign = -torch.sign(lower + upper).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return lik.clamp_min(LIKELIHOOD_MIN)

    # ----------------------------------------------------------------- freezing

    @torch.no_grad()
    def freeze(self) -> dict[str, Any]:
        """Integer tables for every level and channel (plain Python, for the checkpoint); installs them."""
        with torch.random.fork_rng(devices=[]):  # a scratch copy must not move the caller's RNG
            model = EntropyModel(self.latent_channels, self.n_qualities, self.filters)
        model.load_state_dict({k: v.detach().cpu() for k, v in self.state_dict().items()})
        model.double()
        rows = torch.arange(self.n_qualities * self.latent_channels)
        tail = math.log(TAIL_MASS) - math.log1p(-TAIL_MASS)
        lo_x = model._solve(rows, tail)
        hi_x = model._solve(rows, -tail)
        mid_x = model._solve(rows, 0.0)
        offsets, freqs = [], []
        for r in range(len(rows)):
            lo = int(math.floor(max(-SEARCH_BOUND, float(lo_x[r]))))
            hi = int(math.ceil(min(SEARCH_BOUND, float(hi_x[r]))))
            if hi - lo + 1 > MAX_TABLE:
                lo = int(round(float(mid_x[r]))) - MAX_TABLE // 2
                hi = lo + MAX_TABLE - 1
            offsets.append(lo)
            freqs.append(quantize_pmf(model._table_pmf(r, lo, hi)).tolist())
        c = self.latent_channels
        frozen = {
            "version": FROZEN_VERSION,
            "precision": PRECISION,
            "n_qualities": self.n_qualities,
            "latent_channels": c,
            "gains": [[float(v) for v in row] for row in self.gains().detach().float().cpu()],
            "offsets": [offsets[q * c : (q + 1) * c] for q in range(self.n_qualities)],
            "freqs": [freqs[q * c : (q + 1) * c] for q in range(self.n_qualities)],
        }
        self.install_frozen(frozen)
        return frozen

    def _solve(self, rows: Tensor, target: float) -> Tensor:
        """x where the CDF logit equals target, per row, by bisection (the logit is monotone in x)."""
        a = torch.full((len(rows),), -SEARCH_BOUND, dtype=torch.float64)
        b = torch.full((len(rows),), SEARCH_BOUND, dtype=torch.float64)
        for _ in range(80):
            mid = 0.5 * (a + b)
            below = self._logits_cumulative(mid.view(-1, 1, 1), rows).view(-1) < target
            a = torch.where(below, mid, a)
            b = torch.where(below, b, mid)
        return 0.5 * (a + b)

    def _table_pmf(self, row: int, lo: int, hi: int) -> np.ndarray:
        """Probabilities of symbols lo..hi of one row, then the escape mass (both tails) last."""
        idx = torch.tensor([row])
        s = torch.arange(lo, hi + 1, dtype=torch.float64).view(1, 1, -1)
        pmf = self._likelihood_exact(s, idx).view(-1)
        edges = self._logits_cumulative(torch.tensor([[[lo - 0.5, hi + 0.5]]], dtype=torch.float64), idx).view(-1)
        escape = torch.sigmoid(edges[0]) + torch.sigmoid(-edges[1])
        return torch.cat([pmf, escape.view(1)]).numpy()

    def _likelihood_exact(self, v: Tensor, rows: Tensor) -> Tensor:
        m = v.shape[-1]
        both = self._logits_cumulative(torch.cat([v - 0.5, v + 0.5], dim=-1), rows)
        lower, upper = both[..., :m], both[..., m:]
        sign = -torch.sign(lower + upper)
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    @classmethod
    def from_frozen(cls, d: dict[str, Any]) -> EntropyModel:
        """A model that can quantize/encode/decode with the given tables (density parameters stay untrained
        unless a state dict is loaded on top)."""
        try:
            with torch.random.fork_rng(devices=[]):
                model = cls(latent_channels=int(d["latent_channels"]), n_qualities=int(d["n_qualities"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"frozen entropy tables lack a valid {exc}") from exc
        model.install_frozen(d)
        with torch.no_grad():
            model.log_gain.copy_(torch.log(torch.tensor(model._tables.gains, dtype=torch.float32)))
        return model

    def install_frozen(self, d: dict[str, Any]) -> None:
        """Use these tables (and their gains) for quantize/encode/decode."""
        self._tables = _Tables.validate(d, self.n_qualities, self.latent_channels)
        self._frozen = d

    @property
    def frozen(self) -> dict[str, Any] | None:
        """The installed tables, or None before `freeze()` / `install_frozen()`."""
        return self._frozen

    # ----------------------------------------------------------------- coding side

    def _require_tables(self) -> _Tables:
        if self._tables is None:
            raise ModelError("entropy model has no frozen tables: call freeze() or load them from a checkpoint")
        return self._tables

    def quantize(self, y: Tensor, q: int) -> np.ndarray:
        """int32 symbols round(y * g_q) for latents (..., C, h, w), with the frozen gains."""
        tables = self._require_tables()
        level = self._check_level(q)
        g = torch.tensor(tables.gains[level], dtype=torch.float32, device=y.device).view(-1, 1, 1)
        v = torch.round(torch.nan_to_num(y.float() * g, nan=0.0))
        v = v.clamp(-_FLOAT_CLAMP, _FLOAT_CLAMP)
        return v.to(torch.int32).cpu().numpy()

    def dequantize(self, s: np.ndarray, q: int, device: torch.device | str | None = None) -> Tensor:
        """Latents s / g_q (float32) for symbols (..., C, h, w)."""
        tables = self._require_tables()
        level = self._check_level(q)
        g = torch.tensor(tables.gains[level], dtype=torch.float32).view(-1, 1, 1)
        out = torch.from_numpy(np.asarray(s, dtype=np.float32)) / g
        return out if device is None else out.to(device)

    def encode(self, symbols: np.ndarray, q: int) -> bytes:
        """Entropy-code int32 symbols of shape (C, h, w); deterministic (same symbols -> same bytes)."""
        import constriction

        tables = self._require_tables()
        level = self._check_level(q)
        s = self._check_symbols(symbols)
        coder = constriction.stream.stack.AnsCoder()
        flat = s.reshape(s.shape[0], -1)
        indices, escaped = [], []
        for ch in range(flat.shape[0]):
            idx, esc = tables.index(level, ch, flat[ch])
            indices.append(idx)
            escaped.append(esc)
        for ch in reversed(range(flat.shape[0])):  # a stack: last pushed is decoded first
            coder.encode_reverse(indices[ch], tables.categorical(level, ch))
        words = coder.get_compressed().astype("<u4", copy=False)
        side = zigzag_encode(np.concatenate(escaped)) if escaped else b""
        return struct.pack("<I", len(words)) + words.tobytes() + side

    def decode(self, data: bytes, q: int, shape: tuple[int, int, int]) -> np.ndarray:
        """Inverse of `encode`: int32 symbols of `shape` (C, h, w); ContainerError for any malformed data."""
        tables = self._require_tables()
        level = self._check_level(q)
        c, h, w = (int(v) for v in shape)
        if c != self.latent_channels or h < 0 or w < 0:
            raise ContainerError(f"latent shape {tuple(shape)} does not match {self.latent_channels} channels")
        try:
            return self._decode(bytes(data), tables, level, c, h * w).reshape(c, h, w)
        except ContainerError:
            raise
        except Exception as exc:  # constriction raises plain exceptions for garbage input
            raise ContainerError(f"corrupt entropy-coded latents: {exc}") from exc

    def _decode(self, data: bytes, tables: _Tables, level: int, c: int, n: int) -> np.ndarray:
        import constriction

        if len(data) < 4:
            raise ContainerError("entropy-coded latents are truncated (no word count)")
        (n_words,) = struct.unpack_from("<I", data)
        end = 4 + 4 * n_words
        if end > len(data):
            raise ContainerError("entropy-coded latents are truncated")
        words = np.frombuffer(data, dtype="<u4", count=n_words, offset=4).astype(np.uint32)
        coder = constriction.stream.stack.AnsCoder(words)
        out = np.empty((c, n), dtype=np.int64)
        esc_mask = np.zeros((c, n), dtype=bool)
        for ch in range(c):
            idx = np.asarray(coder.decode(tables.categorical(level, ch), n), dtype=np.int64)
            out[ch] = idx + tables.offsets[level][ch]
            esc_mask[ch] = idx == tables.escape_index(level, ch)
        if not coder.is_empty():
            raise ContainerError("entropy-coded latents have trailing or corrupt data")
        n_esc = int(esc_mask.sum())
        dist = zigzag_decode(data[end:], n_esc, "entropy-coded latents")
        if n_esc:
            ch_of = np.nonzero(esc_mask)[0]
            lo = np.asarray(tables.offsets[level], dtype=np.int64)[ch_of]
            hi = lo + np.asarray([tables.escape_index(level, k) for k in range(c)], dtype=np.int64)[ch_of] - 1
            if np.any(dist == 0):
                raise ContainerError("corrupt escape value in entropy-coded latents")
            values = np.where(dist > 0, hi + dist, lo + dist)
            if np.any(values < INT32_MIN) or np.any(values > INT32_MAX):
                raise ContainerError("escape value out of int32 range in entropy-coded latents")
            out[esc_mask] = values
        return out.astype(np.int32)

    def estimate_bits(self, symbols: np.ndarray, q: int) -> float:
        """Ideal code length in bits of `encode(symbols, q)` from the tables (ANS adds about 12 bytes)."""
        tables = self._require_tables()
        level = self._check_level(q)
        s = self._check_symbols(symbols)
        flat = s.reshape(s.shape[0], -1)
        bits = 0.0
        escaped = []
        for ch in range(flat.shape[0]):
            idx, esc = tables.index(level, ch, flat[ch])
            freq = np.asarray(tables.freqs[level][ch], dtype=np.float64)[idx]
            bits += float(np.sum(PRECISION - np.log2(freq)))
            escaped.append(esc)
        side = zigzag_encode(np.concatenate(escaped)) if escaped else b""
        return bits + 8.0 * len(side)

    def _check_symbols(self, symbols: np.ndarray) -> np.ndarray:
        s = np.asarray(symbols)
        if s.ndim != 3 or s.shape[0] != self.latent_channels:
            raise InputError(f"symbols must be ({self.latent_channels}, h, w), got {s.shape}")
        if not np.issubdtype(s.dtype, np.integer):
            raise InputError(f"symbols must be integers, got {s.dtype}")
        if s.size and (s.min() < INT32_MIN or s.max() > INT32_MAX):
            raise InputError("symbols must fit in int32")
        return s.astype(np.int64)


class _Tables:
    """Validated integer tables plus cached constriction models (built lazily, one per level and channel)."""

    def __init__(self, gains: list[list[float]], offsets: list[list[int]], freqs: list[list[np.ndarray]]) -> None:
        self.gains = gains
        self.offsets = offsets
        self.freqs = freqs
        self._models: dict[tuple[int, int], Any] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> _Tables:
        return self  # immutable once validated: copies of a model share tables and coder models

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_models": {}}  # constriction models do not pickle; rebuilt lazily

    @classmethod
    def validate(cls, d: dict[str, Any], n_qualities: int, channels: int) -> _Tables:
        try:
            if int(d["version"]) != FROZEN_VERSION or int(d["precision"]) != PRECISION:
                raise ModelError(f"unsupported entropy table version/precision {d['version']}/{d['precision']}")
            if int(d["n_qualities"]) != n_qualities or int(d["latent_channels"]) != channels:
                raise ModelError("entropy tables do not match the model's levels/channels")
            gains = [[float(v) for v in d["gains"][q]] for q in range(n_qualities)]
            offsets = [[int(v) for v in d["offsets"][q]] for q in range(n_qualities)]
            freqs = [
                [np.asarray(d["freqs"][q][c], dtype=np.int64) for c in range(channels)] for q in range(n_qualities)
            ]
        except ModelError:
            raise
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelError(f"malformed frozen entropy tables: {exc!r}") from exc
        for q in range(n_qualities):
            if len(gains[q]) != channels or len(offsets[q]) != channels:
                raise ModelError(f"entropy tables: level {q + 1} has the wrong number of channels")
            for c in range(channels):
                f = freqs[q][c]
                ok = f.ndim == 1 and 2 <= len(f) <= MAX_TABLE + 1 and f.min() >= 1 and int(f.sum()) == TOTAL
                if not ok or not math.isfinite(gains[q][c]) or gains[q][c] <= 0:
                    raise ModelError(f"entropy tables: invalid table for level {q + 1}, channel {c}")
                if not INT32_MIN <= offsets[q][c] <= INT32_MAX - len(f):
                    raise ModelError(f"entropy tables: offset out of range for level {q + 1}, channel {c}")
        return cls(gains, offsets, freqs)

    def escape_index(self, q: int, c: int) -> int:
        return len(self.freqs[q][c]) - 1

    def index(self, q: int, c: int, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Table indices (escape index if out of table) and the escapes' signed distances beyond the edge."""
        esc_i = self.escape_index(q, c)
        idx = s - self.offsets[q][c]
        outside = (idx < 0) | (idx >= esc_i)
        dist = np.where(idx >= esc_i, idx - esc_i + 1, idx)[outside]
        return np.where(outside, esc_i, idx).astype(np.int32), dist

    def categorical(self, q: int, c: int) -> Any:
        key = (q, c)
        if key not in self._models:
            import constriction

            probs = self.freqs[q][c].astype(np.float64) / TOTAL
            self._models[key] = constriction.stream.model.Categorical(probs, perfect=False)
        return self._models[key]
