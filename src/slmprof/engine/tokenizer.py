"""Tokenizers built from GGUF metadata (`tokenizer.ggml.*`).

    gpt2   byte-level BPE: the text is split by the pre-tokenizer regex named in
           `tokenizer.ggml.pre` (smollm, llama-bpe / default, qwen2), each piece's UTF-8 bytes are
           mapped to printable characters (GPT-2's byte map), and `tokenizer.ggml.merges` are
           applied lowest rank first.
    llama  SentencePiece (SPM): spaces become U+2581 "▁" (and one is prefixed), characters are
           merged pairwise, highest `tokenizer.ggml.scores` first, as long as the merged piece is
           in the vocabulary; characters with no piece fall back to byte tokens <0xXX>.

Control and user-defined tokens (`<|im_start|>`, `<s>`, ...) written in the text are matched
whole. `synthetic_vocab(...)` builds small real vocabularies of both kinds for synthetic models.
"""
import heapq
import string
from functools import lru_cache

import regex

from slmprof.engine.gguf import Metadata
from slmprof.errors import ModelFileError, UnsupportedError

# tokenizer.ggml.token_type values
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

SPM_SPACE = "\u2581"   # "▁"

# Pre-tokenizer split patterns (the ones llama.cpp and HF use for these models).
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRE_TOKENIZERS = {
    # SmolLM/SmolLM2: every digit on its own, then GPT-2's split
    "smollm": [r"\p{N}", _GPT2_PATTERN],
    # Llama 3
    "llama-bpe": [r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    # Qwen2 / Qwen2.5: like Llama 3 but single digits
    "qwen2": [r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "gpt2": [_GPT2_PATTERN],
}
PRE_TOKENIZERS["default"] = PRE_TOKENIZERS["llama-bpe"]


@lru_cache(maxsize=1)
def byte_to_unicode():
    """GPT-2's reversible map from bytes to printable characters (byte 0x20 -> 'Ġ', ...)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


@lru_cache(maxsize=1)
def unicode_to_byte():
    return {c: b for b, c in byte_to_unicode().items()}


class Tokenizer:
    """Common parts: vocabulary, special tokens, encode/decode around the model-specific core."""

    def __init__(self, tokens, token_types=None, bos_id=None, eos_id=None, unk_id=None,
                 add_bos=True, source="tokenizer"):
        self.tokens = list(tokens)
        self.vocab_size = len(self.tokens)
        self.source = source
        if token_types is None:
            token_types = [NORMAL] * self.vocab_size
        self.token_types = [int(t) for t in token_types]
        if len(self.token_types) != self.vocab_size:
            raise ModelFileError(f"{source}: tokenizer.ggml.token_type has "
                                 f"{len(self.token_types)} entries for {self.vocab_size} tokens")
        for what, tid in (("bos", bos_id), ("eos", eos_id), ("unknown", unk_id)):
            if tid is not None and not 0 <= tid < self.vocab_size:
                raise ModelFileError(f"{source}: tokenizer.ggml.{what}_token_id {tid} is outside "
                                     f"the vocabulary of {self.vocab_size} tokens")
        self.bos_id, self.eos_id, self.unk_id = bos_id, eos_id, unk_id
        self.add_bos = add_bos
        self.token_to_id = {}
        for i, t in enumerate(self.tokens):
            self.token_to_id.setdefault(t, i)
        specials = sorted({t for t, ty in zip(self.tokens, self.token_types)
                           if ty in (CONTROL, USER_DEFINED) and t}, key=len, reverse=True)
        self._special_split = (regex.compile("(" + "|".join(regex.escape(s) for s in specials)
                                             + ")") if specials else None)

    # --- construction ---------------------------------------------------------------------------
    @staticmethod
    def from_gguf(gguf_file):
        return Tokenizer.from_metadata(gguf_file.meta)

    @staticmethod
    def from_metadata(meta, source="tokenizer"):
        """From a GGUFFile's `meta` (a gguf.Metadata) or a dict of tokenizer.ggml.* values.
        A key of the wrong type is a ModelFileError that names it."""
        if not isinstance(meta, Metadata):
            meta = Metadata(meta, source)
        source = meta.source
        model = meta.string("tokenizer.ggml.model", None)
        if model is None:
            raise ModelFileError(f"{source}: missing metadata 'tokenizer.ggml.model' "
                                 f"(the file has no tokenizer)")
        tokens = meta.strings("tokenizer.ggml.tokens", None)
        if not tokens:
            raise ModelFileError(f"{source}: missing or empty 'tokenizer.ggml.tokens'")
        common = dict(
            tokens=tokens,
            token_types=meta.integers("tokenizer.ggml.token_type", None),
            bos_id=meta.integer("tokenizer.ggml.bos_token_id", None),
            eos_id=meta.integer("tokenizer.ggml.eos_token_id", None),
            unk_id=meta.integer("tokenizer.ggml.unknown_token_id", None),
            source=source,
        )
        if model == "gpt2":
            merges = meta.strings("tokenizer.ggml.merges", None)
            if merges is None:
                raise ModelFileError(f"{source}: gpt2 tokenizer without 'tokenizer.ggml.merges'")
            return BPETokenizer(merges=merges, pre=meta.string("tokenizer.ggml.pre", "default"),
                                add_bos=meta.boolean("tokenizer.ggml.add_bos_token", False),
                                **common)
        if model == "llama":
            scores = meta.numbers("tokenizer.ggml.scores", None)
            if scores is None or len(scores) != len(tokens):
                raise ModelFileError(f"{source}: llama (SPM) tokenizer needs "
                                     f"'tokenizer.ggml.scores' with one score per token")
            return SPMTokenizer(scores=scores,
                                add_space_prefix=meta.boolean("tokenizer.ggml.add_space_prefix",
                                                              True),
                                add_bos=meta.boolean("tokenizer.ggml.add_bos_token", True),
                                **common)
        raise UnsupportedError(f"{source}: unsupported tokenizer model {model!r} "
                               f"(supported: gpt2, llama)")

    # --- public API -----------------------------------------------------------------------------
    def encode(self, text, add_bos=True, parse_special=True):
        """Text -> token ids. `add_bos`: start with BOS when the model's tokenizer asks for one
        (tokenizer.ggml.add_bos_token). Special tokens written in the text are matched whole
        unless parse_special is False."""
        ids = []
        if add_bos and self.add_bos and self.bos_id is not None:
            ids.append(self.bos_id)
        fragments = self._split_special(text) if parse_special else [(text, False)]
        self._encode_fragments(fragments, ids)
        return ids

    def decode(self, ids):
        """Token ids -> text (invalid UTF-8 from partial sequences becomes U+FFFD)."""
        return self._decode_bytes(ids).decode("utf-8", errors="replace")

    def token_to_bytes(self, token_id):
        """The raw bytes one token stands for (for streaming output that may split characters)."""
        self._check_id(token_id)
        return self._piece_bytes(token_id)

    def token_to_piece(self, token_id):
        return self.token_to_bytes(token_id).decode("utf-8", errors="replace")

    def is_special(self, token_id):
        return self.token_types[token_id] in (CONTROL, USER_DEFINED, UNKNOWN)

    # --- shared helpers -------------------------------------------------------------------------
    def _check_id(self, token_id):
        if not 0 <= int(token_id) < self.vocab_size:
            raise ValueError(f"token id {token_id} is outside the vocabulary "
                             f"(0..{self.vocab_size - 1})")

    def _split_special(self, text):
        """[(fragment, is_special)] with special tokens cut out whole."""
        if self._special_split is None:
            return [(text, False)] if text else []
        out = []
        for i, part in enumerate(self._special_split.split(text)):
            if part:
                out.append((part, i % 2 == 1))
        return out

    def _decode_bytes(self, ids):
        return b"".join(self.token_to_bytes(i) for i in ids)

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, bos={self.bos_id}, " \
               f"eos={self.eos_id})"


class BPETokenizer(Tokenizer):
    """GPT-2 style byte-level BPE."""

    def __init__(self, merges, pre="default", **kw):
        super().__init__(**kw)
        if pre not in PRE_TOKENIZERS:
            raise UnsupportedError(f"{self.source}: unsupported pre-tokenizer {pre!r} "
                                   f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})")
        self.pre = pre
        self._patterns = [regex.compile(p) for p in PRE_TOKENIZERS[pre]]
        self.merge_rank = {}
        for rank, m in enumerate(merges):
            parts = m.split(" ")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise ModelFileError(f"{self.source}: tokenizer.ggml.merges[{rank}] = {m!r} is "
                                     f"not two symbols separated by one space")
            self.merge_rank.setdefault((parts[0], parts[1]), rank)
        self._b2u = byte_to_unicode()
        self._u2b = unicode_to_byte()
        self._cache = {}

    def pre_tokenize(self, text):
        """Split text into the pieces BPE works on, one pattern after the other."""
        pieces = [text]
        for pat in self._patterns:
            out = []
            for piece in pieces:
                # keep the text between matches too (HF's "isolated" split behaviour)
                pos = 0
                for m in pat.finditer(piece):
                    if m.start() > pos:
                        out.append(piece[pos:m.start()])
                    if m.end() > m.start():
                        out.append(m.group())
                    pos = m.end()
                if pos < len(piece):
                    out.append(piece[pos:])
            pieces = out
        return pieces

    def bpe(self, word):
        """Merge the symbols of one mapped piece, lowest merge rank first (leftmost on ties)."""
        symbols = list(word)
        rank = self.merge_rank
        while len(symbols) > 1:
            best, best_i = None, -1
            for i in range(len(symbols) - 1):
                r = rank.get((symbols[i], symbols[i + 1]))
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            a, b = symbols[best_i], symbols[best_i + 1]
            merged = []
            i = 0
            # merge every occurrence of this pair, left to right (GPT-2 and HF agree on this)
            while i < len(symbols):
                if i < len(symbols) - 1 and symbols[i] == a and symbols[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def _encode_fragments(self, fragments, ids):
        for text, special in fragments:
            if special:
                ids.append(self.token_to_id[text])
                continue
            for piece in self.pre_tokenize(text):
                cached = self._cache.get(piece)
                if cached is None:
                    mapped = "".join(self._b2u[b] for b in piece.encode("utf-8"))
                    cached = []
                    for sym in self.bpe(mapped):
                        tid = self.token_to_id.get(sym)
                        if tid is not None:
                            cached.append(tid)
                        else:   # a symbol the vocabulary lacks: its characters one by one
                            for ch in sym:
                                cid = self.token_to_id.get(ch, self.unk_id)
                                if cid is None:
                                    raise ModelFileError(
                                        f"{self.source}: cannot encode {ch!r}: it is not in "
                                        f"'tokenizer.ggml.tokens' and there is no "
                                        f"'tokenizer.ggml.unknown_token_id'")
                                cached.append(cid)
                    if len(self._cache) < 100_000:
                        self._cache[piece] = cached
                ids.extend(cached)

    def _piece_bytes(self, token_id):
        text = self.tokens[token_id]
        if self.token_types[token_id] in (CONTROL, USER_DEFINED, UNKNOWN, UNUSED):
            return text.encode("utf-8")
        u2b = self._u2b
        try:
            return bytes(u2b[c] for c in text)
        except KeyError:
            return text.encode("utf-8")


def _byte_token_value(text):
    """<0xHH> -> HH as an int; None for anything else."""
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">") and \
            all(c in string.hexdigits for c in text[3:5]):
        return int(text[3:5], 16)
    return None


class SPMTokenizer(Tokenizer):
    """SentencePiece (llama.cpp's `llama` vocabulary): score-ordered merges, byte fallback."""

    def __init__(self, scores, add_space_prefix=True, **kw):
        super().__init__(**kw)
        self.scores = [float(s) for s in scores]
        self.add_space_prefix = add_space_prefix
        self.byte_ids = {}          # byte value -> token id
        self._byte_of = {}          # token id -> byte value
        for i, (t, ty) in enumerate(zip(self.tokens, self.token_types)):
            if ty != BYTE:
                continue
            value = _byte_token_value(t)
            if value is None:
                raise ModelFileError(f"{self.source}: tokenizer.ggml.tokens[{i}] = {t!r} has "
                                     f"token type BYTE ({BYTE}) but is not of the form <0xHH>")
            self.byte_ids.setdefault(value, i)
            self._byte_of[i] = value

    def _encode_fragments(self, fragments, ids):
        prev_special = True     # a space is prefixed to the first text, and after a special token
        for text, special in fragments:
            if special:
                ids.append(self.token_to_id[text])
                prev_special = True
                continue
            if self.add_space_prefix and prev_special:
                text = " " + text
            prev_special = False
            self._encode_text(text.replace(" ", SPM_SPACE), ids)

    def _encode_text(self, text, ids):
        # Doubly linked list of symbols; a heap of candidate merges (best score, then leftmost).
        if not text:
            return
        symbols = list(text)
        n = len(symbols)
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        heap = []
        vocab, scores = self.token_to_id, self.scores

        def push(i, j):
            tid = vocab.get(symbols[i] + symbols[j])
            if tid is not None:
                heapq.heappush(heap, (-scores[tid], i, symbols[i], symbols[j]))

        for i in range(n - 1):
            push(i, i + 1)
        while heap:
            _, i, left, right = heapq.heappop(heap)
            j = nxt[i]
            # stale entries: either side changed since the candidate was pushed
            if j == -1 or symbols[i] != left or symbols[j] != right:
                continue
            symbols[i] = left + right
            symbols[j] = ""
            nxt[i] = nxt[j]
            if nxt[j] != -1:
                prev[nxt[j]] = i
            if prev[i] != -1:
                push(prev[i], i)
            if nxt[i] != -1:
                push(i, nxt[i])
        i = 0
        while i != -1:
            sym = symbols[i]
            tid = vocab.get(sym)
            if tid is not None:
                ids.append(tid)
            else:
                for b in sym.encode("utf-8"):
                    bid = self.byte_ids.get(b, self.unk_id)
                    if bid is None:
                        raise ModelFileError(
                            f"{self.source}: cannot encode {sym!r}: 'tokenizer.ggml.tokens' has "
                            f"no piece and no byte token <0x{b:02X}> for it, and there is no "
                            f"'tokenizer.ggml.unknown_token_id'")
                    ids.append(bid)
            i = nxt[i]

    def _piece_bytes(self, token_id):
        text = self.tokens[token_id]
        ty = self.token_types[token_id]
        if ty == BYTE:
            return bytes([self._byte_of[token_id]])
        if ty in (CONTROL, UNKNOWN, USER_DEFINED, UNUSED):
            return text.encode("utf-8")
        return text.replace(SPM_SPACE, " ").encode("utf-8")

    def decode(self, ids):
        ids = [int(i) for i in ids]
        parts = [self.token_to_bytes(i) for i in ids]
        # the space prefixed when encoding is not part of the text: drop it from the first
        # ordinary token (after any BOS / control tokens)
        if self.add_space_prefix:
            for k, i in enumerate(ids):
                if not self.is_special(i):
                    if parts[k].startswith(b" ") and self.tokens[i].startswith(SPM_SPACE):
                        parts[k] = parts[k][1:]
                    break
        return b"".join(parts).decode("utf-8", errors="replace")


# --- synthetic vocabularies ------------------------------------------------------------------------
# A little English to learn merges from, so synthetic models tokenize text into word-like pieces.
_CORPUS = """
The small model runs on the board beside the sensor. Each layer reads its weights from memory,
multiplies them with the activations, and writes the result for the next layer. When the weights
do not fit in the cache, the time goes to waiting for memory; when they do, it goes to arithmetic.
A profiler that measures every layer can tell the two apart. The quick brown fox jumps over the
lazy dog, and the five boxing wizards jump quickly. She sells sea shells by the sea shore. There
are 7 days in a week, 12 months in a year, and 365 days in most years. What is the capital of
France? The capital of France is Paris. The capital of Italy is Rome, and the capital of Spain is
Madrid. Questions and answers, tokens and words: this is the text that these tokenizers learn from.
It's what they'll see, isn't it? We're here, you've seen it, I'm sure, they'd know. 0123456789
"""


def _train_merges(words, n_merges):
    """Plain BPE training: repeatedly merge the most frequent adjacent pair (ties: first seen)."""
    vocab = {}
    for w in words:
        key = tuple(w)
        vocab[key] = vocab.get(key, 0) + 1
    merges = []
    for _ in range(n_merges):
        counts = {}
        for word, freq in vocab.items():
            for pair in zip(word, word[1:]):
                counts[pair] = counts.get(pair, 0) + freq
        if not counts:
            break
        best = max(counts, key=counts.get)
        if counts[best] < 2:
            break
        merges.append(best)
        new_vocab = {}
        for word, freq in vocab.items():
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_vocab[tuple(out)] = new_vocab.get(tuple(out), 0) + freq
        vocab = new_vocab
    return merges


_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def _filler_words(n, taken, space):
    """n made-up words ("<space>kalo", "<space>mibe", ...) not in `taken`: they fill a synthetic
    vocabulary to its real size, so sampled ids decode to word-like text of realistic length."""
    out = []
    i = len(_SYLLABLES)          # start at two syllables
    while len(out) < n:
        k, parts = i, []
        while k:
            k, r = divmod(k, len(_SYLLABLES))
            parts.append(_SYLLABLES[r])
        word = space + "".join(reversed(parts))
        if word not in taken:
            out.append(word)
        i += 1
    return out


@lru_cache(maxsize=8)
def _bpe_vocab(pre, vocab_size):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    b2u = byte_to_unicode()
    byte_tokens = [b2u[b] for b in range(256)]
    room = vocab_size - len(specials) - len(byte_tokens)
    if room < 0:
        raise ValueError(f"a byte-level BPE vocabulary needs at least {len(specials) + 256} tokens")
    splitter = BPETokenizer(merges=[], pre=pre, tokens=byte_tokens)
    words = ["".join(b2u[b] for b in p.encode()) for p in splitter.pre_tokenize(_CORPUS)]
    merges = _train_merges(words, min(room, 400))
    tokens = specials + byte_tokens
    tokens += list(dict.fromkeys(a + b for a, b in merges if a + b not in tokens))
    types = [CONTROL] * len(specials) + [NORMAL] * (len(tokens) - len(specials))
    pad = vocab_size - len(tokens)
    tokens += _filler_words(pad, set(tokens), b2u[ord(" ")])    # no merges lead to these
    types += [NORMAL] * pad
    return tokens, types, [f"{a} {b}" for a, b in merges]


@lru_cache(maxsize=8)
def _spm_vocab(vocab_size):
    specials = [("<unk>", UNKNOWN), ("<s>", CONTROL), ("</s>", CONTROL)]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    words = [SPM_SPACE + w for w in _CORPUS.split()]
    chars = sorted({c for w in words for c in w})
    room = vocab_size - len(specials) - len(byte_tokens) - len(chars)
    if room < 0:
        raise ValueError(f"an SPM vocabulary needs at least "
                         f"{len(specials) + 256 + len(chars)} tokens")
    merges = _train_merges(words, min(room, 400))
    tokens = [t for t, _ in specials] + byte_tokens
    types = [ty for _, ty in specials] + [BYTE] * 256
    scores = [0.0] * len(tokens)
    for c in chars:                      # single characters: never merged into, lowest scores
        tokens.append(c)
        types.append(NORMAL)
        scores.append(-1000.0)
    seen = set(tokens)
    for rank, (a, b) in enumerate(merges):   # earlier merges score higher
        if a + b in seen:
            continue
        seen.add(a + b)
        tokens.append(a + b)
        types.append(NORMAL)
        scores.append(-float(rank))
    pad = vocab_size - len(tokens)
    tokens += _filler_words(pad, seen, SPM_SPACE)
    types += [NORMAL] * pad
    scores += [-1000.0 - i for i in range(pad)]
    return tokens, types, scores


def synthetic_vocab(kind, vocab_size, pre="smollm"):
    """Metadata (key -> value) for a small real vocabulary of `vocab_size` tokens.
    kind "gpt2": byte-level BPE with learned merges and pre-tokenizer `pre`;
    kind "llama": SPM with byte fallback. Made-up words fill the vocabulary to its size."""
    if kind == "gpt2":
        tokens, types, merges = _bpe_vocab(pre or "default", vocab_size)
        return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre or "default",
                "tokenizer.ggml.tokens": list(tokens), "tokenizer.ggml.token_type": list(types),
                "tokenizer.ggml.merges": list(merges), "tokenizer.ggml.bos_token_id": 1,
                "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
                "tokenizer.ggml.add_bos_token": False}
    if kind == "llama":
        tokens, types, scores = _spm_vocab(vocab_size)
        return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": list(tokens),
                "tokenizer.ggml.scores": list(scores), "tokenizer.ggml.token_type": list(types),
                "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
                "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": True,
                "tokenizer.ggml.add_space_prefix": True}
    raise ValueError(f"unknown tokenizer kind {kind!r} (gpt2, llama)")
