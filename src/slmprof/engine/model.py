"""A loaded model: the C engine over a mapped GGUF file, its tokenizer, and generation.

    >>> from slmprof.engine.model import Model
    >>> m = Model.load("smollm2-135m", threads=2)              # doctest: +SKIP
    >>> for token, piece in m.generate("The capital of France is", max_tokens=8):
    ...     print(piece, end="")                                # doctest: +SKIP

Weights stay in the file mapping (zero-copy); the C side keeps its own KV cache and threads.
`prefill` runs a prompt as one batch; `decode` runs one token; both continue from `n_past`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from slmprof import _core
from slmprof.engine import gguf, quant, registry
from slmprof.engine.sampling import Sampler
from slmprof.engine.tokenizer import Tokenizer
from slmprof.errors import ContextOverflowError, NumericalError

KV_TYPES = ("f32", "f16")
DEFAULT_KV_TYPE = "f32"
# A forward call of more tokens runs in chunks of at most this many, each streaming the weights.
ENGINE_MAX_BATCH = _core.ENGINE_MAX_BATCH

# Region operations in the engine's order (csrc/slm_model.h, slm_op); a region id is
# slot * len(OP_NAMES) + op. A block's operations are those between the embedding and the
# output norm; each architecture runs some of them (block_ops).
OP_NAMES = _core.REGION_OP_NAMES
BLOCK_OPS = OP_NAMES[OP_NAMES.index("embed") + 1:OP_NAMES.index("output_norm")]


def block_ops(arch):
    """The operations a block of architecture `arch` runs, in order (from the engine)."""
    return tuple(op for op in _core.ARCH_OPS[arch] if op in BLOCK_OPS)


def region_id(slot: int, op) -> int:
    """Region id of operation `op` (a name or an index into OP_NAMES) in slot `slot`."""
    return int(slot) * len(OP_NAMES) + (OP_NAMES.index(op) if isinstance(op, str) else int(op))


@dataclass
class GenerationStats:
    """What one Model.generate() did, filled in as it runs."""
    prompt_tokens: int = 0
    prefill_seconds: float = 0.0
    generated: int = 0            # tokens yielded
    decoded: int = 0              # decode calls (the last token yielded is never run)
    decode_seconds: float = 0.0
    stopped_by: str = ""          # "max_tokens", "end of sequence" or "context full"


@dataclass(frozen=True)
class Region:
    id: int
    layer: str   # "embed", "blk.0" ... "blk.N-1", "head"
    op: str      # one of OP_NAMES


def forward_chunks(n_past: int, n_tok: int, max_batch: int = ENGINE_MAX_BATCH):
    """(position, tokens) of each chunk the engine runs n_tok tokens from n_past in."""
    done = 0
    while done < n_tok:
        n = min(max_batch, n_tok - done)
        yield n_past + done, n
        done += n


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_count_note(threads, cores=None) -> Optional[str]:
    """The one rule for a thread count above the cores: None when `threads` fits `cores` (default:
    the cores this process may run on), else a warning to show. The engine runs such a count
    (its threads then take turns on the cores, and every wait for all of them waits for a
    descheduled one), and no figure is extrapolated past the cores: calibrate measures up to
    them, and plan and layers use the figures of the most threads measured."""
    cores = default_threads() if cores is None else int(cores)
    if threads is None or int(threads) <= cores:
        return None
    return (f"{threads} threads on {cores} usable core{'s' if cores != 1 else ''}: the threads "
            "take turns on the cores and each wait for all of them waits for a descheduled one; "
            f"expect less than with {cores}, and ceilings no higher than {cores} threads' "
            "(none is extrapolated past the cores)")


class Model:
    """Use Model.load(); see the module docstring."""

    def __init__(self, engine, gguf_file, description, name, synthetic, ctx, kv_type, tokenizer):
        self._engine = engine
        self._gguf = gguf_file
        self.description = description
        self.config = description.shape
        self.name = name
        self.synthetic = synthetic
        self.ctx = ctx
        self.kv_type = kv_type      # "f32" or "f16" cache entries
        self.tokenizer = tokenizer
        self._profiler = None

    @classmethod
    def load(cls, name_or_path, threads=None, ctx=2048, kv_type=DEFAULT_KV_TYPE, max_batch=0):
        """Load a model by registry name, path or registry.ResolvedModel. threads: worker
        threads (default: every core); ctx: positions the KV cache holds; kv_type: "f32" or
        "f16" cache entries."""
        if threads is None:
            threads = default_threads()
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1 (got {threads!r})")
        if isinstance(ctx, bool) or not isinstance(ctx, (int, np.integer)) or not 1 <= ctx <= _core.MAX_CTX:
            raise ValueError(f"ctx must be an integer in [1, {_core.MAX_CTX}] (got {ctx!r})")
        if kv_type not in KV_TYPES:
            raise ValueError(f"kv_type must be one of {', '.join(KV_TYPES)} (got {kv_type!r})")
        quant.active_isa()      # SLMPROF_ISA naming a path this machine lacks: say so first
        resolved = (name_or_path if isinstance(name_or_path, registry.ResolvedModel)
                    else registry.resolve(name_or_path))
        gf, desc = gguf.open_model(resolved.path)
        try:
            shape = desc.shape
            config = dict(arch=shape.arch, n_layer=shape.n_layer, dim=shape.dim, ffn=shape.ffn,
                          n_head=shape.n_head, n_kv_head=shape.n_kv_head, head_dim=shape.head_dim,
                          vocab=shape.vocab, n_ctx=int(ctx), max_batch=int(max_batch),
                          kv_type=quant.type_id(kv_type), threads=int(threads),
                          rope_base=shape.rope_base, norm_eps=shape.rms_eps,
                          sliding_window=shape.sliding_window,
                          sliding_window_pattern=shape.sliding_window_pattern,
                          rope_base_swa=shape.rope_base_swa, attn_scale=shape.attn_scale,
                          embed_scale=shape.embed_scale, logit_softcap=shape.logit_softcap,
                          weights_file_backed=True)   # views of GGUFFile's mapping
            tensors = []
            for pattern, (kind, per_layer) in _core.ENGINE_TENSORS.items():
                for layer in (range(shape.n_layer) if per_layer else [0]):
                    t = desc.tensors.get(pattern.format(l=layer))
                    if t is None:
                        continue        # optional ones; describe_model checked the required
                    rows = int(np.prod(t.shape[1:])) if len(t.shape) > 1 else 1
                    tensors.append((kind, layer, t.type, rows, int(t.shape[0]), t.data))
            engine = _core.Engine(config, tensors)
            tokenizer = Tokenizer.from_gguf(gf) if "tokenizer.ggml.tokens" in gf.metadata else None
        except BaseException:
            gf.close()
            raise
        return cls(engine, gf, desc, resolved.name, resolved.synthetic, int(ctx), kv_type, tokenizer)

    # --- state ------------------------------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            raise ValueError(f"the model {self.name} is closed")
        return self._engine

    @property
    def threads(self) -> int:
        return self.engine.threads

    @property
    def n_past(self) -> int:
        return self.engine.n_past

    def reset(self):
        """Forget the context (the KV cache is overwritten from position 0)."""
        self.engine.set_n_past(0)

    def close(self):
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._gguf is not None:
            self._gguf.close()
            self._gguf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- running ----------------------------------------------------------------------------
    def _check_tokens(self, tokens):
        toks = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if toks.size == 0:
            raise ValueError("no tokens to run")
        bad = (toks < 0) | (toks >= self.config.vocab)
        if bad.any():
            raise ValueError(f"token id {int(toks[bad][0])} is outside the vocabulary "
                             f"[0, {self.config.vocab})")
        if self.n_past + toks.size > self.ctx:
            raise ContextOverflowError(
                f"{toks.size} tokens at position {self.n_past} exceed the context of {self.ctx} "
                f"tokens (load the model with a larger ctx, or reset())")
        return toks.astype(np.int32)

    def prefill(self, tokens, all_logits=False, last=None):
        """Run tokens as one batch from n_past. Logits: (vocab,) of the last token, (n, vocab)
        with all_logits, or (last, vocab) of the last `last` tokens (the LM head runs only
        for the tokens asked for)."""
        toks = self._check_tokens(tokens)
        if last is not None:
            if not 1 <= last <= len(toks):
                raise ValueError(f"last must be in [1, {len(toks)}] (got {last})")
            return self.engine.forward(toks, int(last))
        return self.engine.forward(toks, len(toks) if all_logits else 0)

    def decode(self, token):
        """Run one token; logits (vocab,)."""
        return self.engine.forward(self._check_tokens([int(token)]), 0)

    def generate(self, prompt, max_tokens=128, temperature=0.0, top_k=0, top_p=1.0, seed=0,
                 stop_at_eos=True, stats: Optional[GenerationStats] = None):
        """Reset, prefill the prompt (text or token ids), then yield (token_id, text_piece) for
        each generated token. Stops at max_tokens, end of sequence, or a full context; `stats`
        (a GenerationStats) gets the timings and why it stopped."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("this model file has no tokenizer; pass token ids")
            tokens = self.tokenizer.encode(prompt, add_bos=True)
        else:
            tokens = [int(t) for t in prompt]
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0 (got {max_tokens})")
        sampler = Sampler(temperature, top_k, top_p, seed)
        st = stats if stats is not None else GenerationStats()
        st.prompt_tokens = len(tokens)
        st.stopped_by = "max_tokens"
        self.reset()
        t0 = time.perf_counter()
        logits = self.prefill(tokens)
        st.prefill_seconds = time.perf_counter() - t0
        eos = self.tokenizer.eos_id if self.tokenizer is not None else None
        generated, text = [], ""
        for i in range(max_tokens):
            try:
                token = sampler.sample(logits)
            except NumericalError as e:
                raise NumericalError(f"{self.name}, position {self.n_past}: {e}") from None
            if stop_at_eos and eos is not None and token == eos:
                st.stopped_by = "end of sequence"
                return
            generated.append(token)
            st.generated += 1
            piece = ""
            if self.tokenizer is not None:
                full = self.tokenizer.decode(generated)
                # a multi-byte character split across tokens: wait for its last byte
                if not full.endswith("\ufffd"):
                    piece, text = full[len(text):], full
            yield token, piece
            if i + 1 == max_tokens:
                return
            if self.n_past >= self.ctx:
                st.stopped_by = "context full"
                return
            t0 = time.perf_counter()
            logits = self.decode(token)
            st.decode_seconds += time.perf_counter() - t0
            st.decoded += 1

    # --- regions and costs ------------------------------------------------------------------
    def region_names(self):
        """[(region_id, layer_name, op_name)] for every region the engine reports, in order."""
        n = self.config.n_layer
        out = [(region_id(0, "layer"), "embed", "layer"), (region_id(0, "embed"), "embed", "embed")]
        for layer in range(n):
            out.append((region_id(layer + 1, "layer"), f"blk.{layer}", "layer"))
            out += [(region_id(layer + 1, op), f"blk.{layer}", op)
                    for op in block_ops(self.config.arch)]
        out += [(region_id(n + 1, op), "head", op) for op in ("layer", "output_norm", "lm_head")]
        return out

    def weight_bytes_per_token(self) -> int:
        """Weight bytes streamed per decoded token (every layer, LM head, one embedding row)."""
        return self.description.weight_bytes_per_token()

    # --- profiling --------------------------------------------------------------------------
    def set_profiler(self, region_table, ops=True):
        """Attach a region table or a trace recorder (a _core.HookSource: its C hooks are
        called at every region edge), or None.

        ops=False: layer regions only. With ops, operation regions record wall time only
        (count and wall ns: no thread CPU time, no counters): there are ~8 per layer and a
        system call or counter snapshot at each of their edges would slow decode by several
        percent. Layer regions keep thread CPU time and counters."""
        self.engine.set_region_ops(bool(ops))
        if isinstance(region_table, _core.RegionTable):
            region_table.set_wall_only(rid for rid, _, op in self.region_names() if op != "layer")
        self.engine.set_hooks(region_table)
        self._profiler = region_table
