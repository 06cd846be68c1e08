"""SlowFastProcessor: the one place where a dialogue becomes tokens (training collate and streaming agent).

Rendering is SEGMENTED: text is tokenized piece by piece, split at chat markers, at placeholders,
after each role header ("user\n"), before the memory sentence and before the first observation,
and the pieces are concatenated. So token ids are prefix-stable by construction: a dialogue's ids equal
the concatenation of the streaming parts (`nav_prefix_ids`, `nav_memory_ids`, `nav_turn_ids`,
`nav_answer_ids`), and `encode()` builds navigation samples from exactly those parts.

The fixed pieces (system message, role headers, memory sentence, each observation turn, each action
chunk, the first user message per instruction) are tokenized once and memoised per processor, so
encoding a training sample calls the tokenizer at most once (for an instruction not seen lately).

Images stay uint8 on the CPU (resized only if their size differs from the model's); conversion to
float and mean/std normalisation happen on the device (`preprocess_on_device`, used by the model).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from agent.config import IGNORE_INDEX, IMAGE_TOKEN_INDEX, MEMORY_TOKEN_INDEX, SIGLIP_MEAN, SIGLIP_STD
from agent.prompt import (
    ACTION_SYMBOLS,
    IM_END,
    IM_START,
    MEMORY_SENTENCE,
    NAV_TASK_INTRO,
    NAV_TASK_RULES,
    SYSTEM_PROMPT,
)
from agent.tokenizer import build_local_tokenizer
from envs.actions import validate_action
from rollout.dialogue import IMAGE_PLACEHOLDER, MEMORY_PLACEHOLDER, ChatDialogue, NavDialogue, Sample

PROCESSOR_FILE = "processor_config.json"
# Memoised token pieces per processor: fixed segments, turns by (conjunction, first, actions) and
# first user messages by instruction. Bounded so free-text input cannot grow it without limit.
SEGMENT_CACHE_ENTRIES = 16384
_PLACEHOLDER_SPLIT = re.compile(f"({re.escape(IMAGE_PLACEHOLDER)}|{re.escape(MEMORY_PLACEHOLDER)})")
_PLACEHOLDER_IDS = {IMAGE_PLACEHOLDER: IMAGE_TOKEN_INDEX, MEMORY_PLACEHOLDER: MEMORY_TOKEN_INDEX}


@dataclass
class ProcessorSettings:
    image_size: int
    image_mean: list[float] = field(default_factory=lambda: list(SIGLIP_MEAN))
    image_std: list[float] = field(default_factory=lambda: list(SIGLIP_STD))
    resize_images: bool = True  # False: a frame of another size is an error instead of resized

    def validate(self) -> None:
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values (RGB)")


@dataclass
class EncodedSample:
    input_ids: torch.Tensor  # int64 (L,), -200 per frame placeholder, -300 at the memory placeholder
    labels: torch.Tensor  # int64 (L,), -100 except assistant tokens and their <|im_end|>
    images: torch.Tensor  # uint8 (N, S, S, 3): memory frames first
    num_memory: int
    time_ids: torch.Tensor  # int64 (N,)
    task_type: str
    source: str = ""


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (N, H, W, 3) frames to (N, size, size, 3) with antialiased bilinear filtering."""
    x = images.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def check_frames(images: torch.Tensor | np.ndarray, what: str) -> None:
    """Raise ValueError (naming `what`) unless images is a uint8 (N, H, W, 3) array."""
    if images.dtype not in (np.uint8, torch.uint8):
        raise ValueError(f"{what}: images must be uint8 (N, H, W, 3), got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"{what}: images must have shape (N, H, W, 3), got {tuple(images.shape)}")


def preprocess_on_device(images: torch.Tensor, image_size: int, mean, std, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (N, H, W, 3) on the model device -> normalised (N, 3, S, S) in `dtype` (resized if needed)."""
    check_frames(images, "encode_frames")
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    mean_t = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).to(dtype)


class SlowFastProcessor:
    """Renders dialogues into token ids + labels, batches them, and parses generated actions."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, settings: ProcessorSettings):
        settings.validate()
        self.tokenizer = tokenizer
        self.settings = settings
        self.im_start_id = self._single_token_id(IM_START)
        self.im_end_id = self._single_token_id(IM_END)
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token")
        self.pad_token_id = int(tokenizer.pad_token_id)
        self._symbol_ids = {symbol: self.text_ids(symbol) for symbol in ACTION_SYMBOLS}
        # (kind, key) -> token ids; kept per instance (a plain dict, so the processor still pickles).
        self._segments: dict[tuple, tuple] = {}

    @classmethod
    def from_config(cls, config, tokenizer: PreTrainedTokenizerBase | None = None) -> SlowFastProcessor:
        """Processor for a SlowFastConfig; without a tokenizer, the locally trained one."""
        tokenizer = tokenizer if tokenizer is not None else build_local_tokenizer()
        if len(tokenizer) > config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model vocab is {config.vocab_size}")
        settings = ProcessorSettings(image_size=config.image_size, image_mean=list(config.image_mean),
                                     image_std=list(config.image_std))
        return cls(tokenizer, settings)

    # ---- tokens ----------------------------------------------------------------------------------

    def _single_token_id(self, token: str) -> int:
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"tokenizer must encode {token!r} as one token, got {ids}")
        return int(ids[0])

    def text_ids(self, text: str) -> list[int]:
        """Token ids of one plain text segment (no chat markers or placeholders inside)."""
        return [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False)] if text else []

    def _memo(self, kind: str, key, build):
        """build() memoised under (kind, key); the oldest entries go first once the cache is full."""
        cache_key = (kind, key)
        value = self._segments.get(cache_key)
        if value is None:
            value = build()
            if len(self._segments) >= SEGMENT_CACHE_ENTRIES:
                del self._segments[next(iter(self._segments))]
            self._segments[cache_key] = value
        return value

    def _segment_ids(self, text: str) -> tuple[int, ...]:
        """text_ids of a fixed piece of wording (role headers, ".", conjunctions), memoised."""
        return self._memo("text", text, lambda: tuple(self.text_ids(text)))

    def _message_start(self, role: str) -> list[int]:
        return [self.im_start_id, *self._segment_ids(f"{role}\n")]

    def _message_end(self) -> tuple[list[int], list[int]]:
        """(<|im_end|>, "\\n") as separate pieces: the first is labelled in assistant turns."""
        return [self.im_end_id], list(self._segment_ids("\n"))

    def _content_ids(self, text: str) -> list[int]:
        """Message content split at placeholders (-200 / -300 in place of `<image>` / `<memory>`)."""
        ids: list[int] = []
        for i, piece in enumerate(_PLACEHOLDER_SPLIT.split(text)):
            ids += [_PLACEHOLDER_IDS[piece]] if i % 2 else self.text_ids(piece)
        return ids

    def _system_ids(self) -> list[int]:
        def build() -> tuple[int, ...]:
            end, newline = self._message_end()
            return (*self._message_start("system"), *self.text_ids(SYSTEM_PROMPT), *end, *newline)

        return list(self._memo("system", None, build))

    # ---- streaming parts (navigation) ------------------------------------------------------------

    def nav_prefix_ids(self, instruction: str) -> list[int]:
        """System message + the first user message up to "...or STOP." (no memory, no frame)."""
        # A trailing period of the instruction is dropped so that "{instruction}." never ends in "..".
        text = instruction.strip().rstrip(".").strip()
        if not text:
            raise ValueError("navigation instruction is empty")
        # The instruction is tokenized together with the wording around it (BPE pieces may span the
        # joins), so the whole first user message is memoised per instruction rather than split.
        first_user = f"{NAV_TASK_INTRO}{text}{NAV_TASK_RULES}"
        return list(self._memo("prefix", text, lambda: (
            *self._system_ids(), *self._message_start("user"), *self.text_ids(first_user))))

    def nav_memory_ids(self) -> list[int]:
        """' These are your historical observations: <memory>.' inside the first user message."""
        return list(self._memo("memory", None, lambda: (
            *self.text_ids(MEMORY_SENTENCE), MEMORY_TOKEN_INDEX, *self._segment_ids("."))))

    def nav_turn_ids(self, conjunction: str, first: bool) -> list[int]:
        """One observation turn ending with the generation prompt '<|im_start|>assistant\\n'."""
        return list(self._memo("turn", (conjunction, bool(first)), lambda: self._build_turn(conjunction, first)))

    def _build_turn(self, conjunction: str, first: bool) -> tuple[int, ...]:
        end, newline = self._message_end()
        if first:
            head = self._segment_ids(f" {conjunction}")
        else:
            head = (*self._message_start("user"), *self._segment_ids(conjunction))
        return (*head, IMAGE_TOKEN_INDEX, *self._segment_ids("."), *end, *newline, *self._message_start("assistant"))

    def _nav_answer_parts(self, actions) -> tuple[list[int], list[int]]:
        key = tuple(int(validate_action(a)) for a in actions)  # bad actions raise before the cache
        labelled, rest = self._memo("answer", key, lambda: self._build_answer(key))
        return list(labelled), list(rest)

    def _build_answer(self, actions) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if not actions:
            raise ValueError("an answered navigation turn needs at least one action")
        # One symbol at a time, so a tokenizer that merges "↑↑" still gives the per-symbol ids decoding uses.
        symbols = [i for a in actions for i in self._symbol_ids[ACTION_SYMBOLS[a]]]
        end, newline = self._message_end()
        return (*symbols, *end), tuple(newline)

    def nav_answer_ids(self, actions) -> list[int]:
        """Assistant answer: the action symbols + '<|im_end|>\\n'."""
        labelled, rest = self._nav_answer_parts(actions)
        return labelled + rest

    @property
    def action_token_ids(self) -> list[int]:
        """Ids allowed while decoding an answer: the action symbols' tokens and the end marker."""
        return sorted({self.im_end_id, *(i for ids in self._symbol_ids.values() for i in ids)})

    def parse_actions(self, token_ids) -> tuple[list[int], bool]:
        """Generated ids -> (actions, ok). ok is False on anything but symbols + <|im_end|>.

        Actions are read up to the first unexpected text; an answer stops at STOP (later symbols are
        meaningless and make ok False).
        """
        text = self.tokenizer.decode([int(i) for i in token_ids], skip_special_tokens=False)
        body, found_end, _ = text.partition(IM_END)
        actions: list[int] = []
        ok = bool(found_end)
        position = 0
        body = body.strip()
        while position < len(body):
            symbol = next((s for s in ACTION_SYMBOLS if body.startswith(s, position)), None)
            if symbol is None or (actions and actions[-1] == 0):
                ok = False
                break
            actions.append(ACTION_SYMBOLS.index(symbol))
            position += len(symbol)
        return actions, ok and bool(actions)

    # ---- samples ---------------------------------------------------------------------------------

    def _render_nav(self, dialogue: NavDialogue) -> tuple[list[int], list[int]]:
        ids = self.nav_prefix_ids(dialogue.instruction)
        if dialogue.has_memory:
            ids += self.nav_memory_ids()
        labels = [IGNORE_INDEX] * len(ids)
        for index, turn in enumerate(dialogue.turns):
            turn_ids = self.nav_turn_ids(turn.conjunction, first=index == 0)
            ids += turn_ids
            labels += [IGNORE_INDEX] * len(turn_ids)
            if not turn.actions:
                if index != len(dialogue.turns) - 1:
                    raise ValueError(f"turn {index} has no actions; only the last turn may be unanswered")
                continue
            labelled, rest = self._nav_answer_parts(turn.actions)
            ids += labelled + rest
            labels += (labelled if turn.trained else [IGNORE_INDEX] * len(labelled)) + [IGNORE_INDEX] * len(rest)
        return ids, labels

    def _render_chat(self, dialogue: ChatDialogue) -> tuple[list[int], list[int]]:
        ids = self._system_ids()
        labels = [IGNORE_INDEX] * len(ids)
        end, newline = self._message_end()
        for index, turn in enumerate(dialogue.turns):
            if turn.role not in ("user", "assistant"):
                raise ValueError(f"turn {index} has role {turn.role!r}; expected 'user' or 'assistant'")
            if turn.role == "assistant" and _PLACEHOLDER_SPLIT.search(turn.text):
                raise ValueError(f"assistant turn {index} contains an image/memory placeholder")
            header, content = self._message_start(turn.role), self._content_ids(turn.text)
            ids += [*header, *content, *end, *newline]
            answer = content + end if turn.role == "assistant" else [IGNORE_INDEX] * (len(content) + len(end))
            labels += [IGNORE_INDEX] * len(header) + answer + [IGNORE_INDEX] * len(newline)
        return ids, labels

    def encode(self, sample: Sample) -> EncodedSample:
        """Sample -> token ids, labels and uint8 frames; bad samples raise ValueError naming them."""
        name = f"sample (source={sample.source!r}, task={_task_name(sample)})"
        try:
            images = self._prepare_images(sample)
            if isinstance(sample.dialogue, NavDialogue):
                if not sample.dialogue.turns:
                    raise ValueError("navigation dialogue has no turns")
                ids, labels = self._render_nav(sample.dialogue)
            elif isinstance(sample.dialogue, ChatDialogue):
                ids, labels = self._render_chat(sample.dialogue)
            else:
                raise ValueError(f"unknown dialogue type {type(sample.dialogue).__name__}")
            self._check_placeholders(ids, images.shape[0], sample.num_memory)
            time_ids = torch.as_tensor(np.asarray(sample.time_ids), dtype=torch.long).reshape(-1)
            if time_ids.numel() != images.shape[0]:
                raise ValueError(f"time_ids has {time_ids.numel()} entries for {images.shape[0]} images")
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        return EncodedSample(
            input_ids=torch.tensor(ids, dtype=torch.long), labels=torch.tensor(labels, dtype=torch.long),
            images=images, num_memory=int(sample.num_memory), time_ids=time_ids,
            task_type=_task_name(sample), source=sample.source,
        )

    def _prepare_images(self, sample: Sample) -> torch.Tensor:
        check_frames(sample.images, "images")
        images = torch.from_numpy(np.ascontiguousarray(sample.images))
        size = self.settings.image_size
        if images.shape[1:3] != (size, size):
            if not self.settings.resize_images:
                raise ValueError(f"images are {tuple(images.shape[1:3])}, the model expects ({size}, {size})")
            images = resize_uint8(images, size)
        return images

    @staticmethod
    def _check_placeholders(ids: list[int], num_images: int, num_memory: int) -> None:
        num_image_tokens = ids.count(IMAGE_TOKEN_INDEX)
        num_memory_tokens = ids.count(MEMORY_TOKEN_INDEX)
        if not 0 <= num_memory <= num_images:
            raise ValueError(f"num_memory {num_memory} is outside [0, {num_images}] (number of images)")
        if num_memory_tokens > 1:
            raise ValueError(f"{num_memory_tokens} <memory> placeholders; at most one is allowed")
        if num_memory_tokens == 1 and num_memory == 0:
            raise ValueError("<memory> placeholder but no history frames (num_memory == 0)")
        if num_memory_tokens == 0 and num_memory > 0:
            raise ValueError(f"{num_memory} history frames but no <memory> placeholder")
        if num_image_tokens != num_images - num_memory:
            raise ValueError(
                f"{num_image_tokens} <image> placeholders but {num_images - num_memory} non-memory frames "
                f"({num_images} images, {num_memory} memory)"
            )

    def collate(self, samples: list[EncodedSample], padding_side: str = "right") -> dict:
        """Pad and stack samples into the batch dict that `model(**batch)` takes."""
        return collate_encoded(samples, self.pad_token_id, self.settings.image_size, padding_side)

    # ---- persistence -----------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / PROCESSOR_FILE).write_text(json.dumps(asdict(self.settings), indent=2) + "\n")
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> SlowFastProcessor:
        directory = Path(directory)
        path = directory / PROCESSOR_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (save the processor with save_pretrained)")
        settings = ProcessorSettings(**json.loads(path.read_text()))
        return cls(AutoTokenizer.from_pretrained(directory), settings)


def collate_encoded(samples: list[EncodedSample], pad_token_id: int, image_size: int,
                    padding_side: str = "right") -> dict:
    """input_ids (pad id) / labels (-100) / attention_mask padded on `padding_side`; images of the batch
    concatenated (sumN, S, S, 3) uint8 with image_counts and num_memory per sample; time_ids padded -1."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    batch, length = len(samples), max(s.input_ids.numel() for s in samples)
    max_frames = max((s.images.shape[0] for s in samples), default=0)
    input_ids = torch.full((batch, length), pad_token_id, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    time_ids = torch.full((batch, max_frames), -1, dtype=torch.long)
    for row, sample in enumerate(samples):
        n = sample.input_ids.numel()
        span = slice(0, n) if padding_side == "right" else slice(length - n, length)
        input_ids[row, span] = sample.input_ids
        labels[row, span] = sample.labels
        attention_mask[row, span] = 1
        time_ids[row, : sample.time_ids.numel()] = sample.time_ids
    frames = [s.images.numpy() for s in samples if s.images.shape[0]]
    images = _concatenate_frames(frames) if frames else torch.zeros((0, image_size, image_size, 3), dtype=torch.uint8)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": attention_mask,
        "images": images,
        "image_counts": torch.tensor([s.images.shape[0] for s in samples], dtype=torch.long),
        "num_memory": torch.tensor([s.num_memory for s in samples], dtype=torch.long),
        "time_ids": time_ids,
        "task_type": [s.task_type for s in samples],
    }


def _concatenate_frames(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 frames of a batch in one tensor, filled by one numpy concatenation (torch.cat of uint8
    (N, S, S, 3) tensors is several times slower on CPU). In a DataLoader worker the tensor is
    allocated in shared memory, as torch's default_collate does, so sending the batch to the main
    process does not copy the frames once more."""
    shape = (sum(frame.shape[0] for frame in frames), *frames[0].shape[1:])
    out = None
    if torch.utils.data.get_worker_info() is not None:
        try:
            storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
            out = torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
        except (AttributeError, RuntimeError):  # a torch without this hook: a plain tensor, copied when sent
            out = None
    if out is None:
        out = torch.empty(shape, dtype=torch.uint8)
    np.concatenate(frames, out=out.numpy())
    return out


def _task_name(sample: Sample) -> str:
    return getattr(sample.task_type, "value", str(sample.task_type))
