"""A small byte-level BPE tokenizer trained locally for the tiny/small presets (no downloads here).

Trained deterministically with `tokenizers` on the navigation prompt, the conjunctions and templated
instruction / QA text built from room, furniture, colour and direction words (plus any extra texts).
Chat markers, `<image>`, `<memory>`, the three arrows and "STOP" are single tokens. Byte-level, so
every string round-trips through encode/decode exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from agent.config import LOCAL_VOCAB_SIZE
from agent.prompt import (
    ACTION_SYMBOLS,
    IM_END,
    IM_START,
    MEMORY_SENTENCE,
    NAV_TASK_INTRO,
    NAV_TASK_RULES,
    PAD_TOKEN,
    SYSTEM_PROMPT,
)
from envs import instructions as phrasing
from envs.scene.catalog import FURNITURE, PALETTE, ROOM_TYPES
from rollout.dialogue import CONJUNCTIONS, IMAGE_PLACEHOLDER, MEMORY_PLACEHOLDER

SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END, IMAGE_PLACEHOLDER, MEMORY_PLACEHOLDER)

# The simulator's own vocabulary and instruction phrasing (envs/scene/catalog.py, envs/instructions.py).
ROOMS = tuple(ROOM_TYPES)
OBJECTS = tuple(FURNITURE)
COLOURS = tuple(PALETTE)
INSTRUCTION_CLAUSES = (
    *(phrase for phrases in phrasing.START_TURN.values() for phrase in phrases),
    *phrasing.START_EXIT, *phrasing.START_SAME_ROOM, *phrasing.DOOR, *phrasing.TURN, *phrasing.LANDMARK,
    *phrasing.END,
)
MOVES = ("walk", "go", "turn", "head", "move", "continue", "exit", "enter", "pass", "stop")
DIRECTIONS = ("left", "right", "straight", "forward", "ahead", "around", "past", "through", "into",
              "out of", "towards", "next to", "in front of", "behind", "near")
# Everyday words of route instructions and answers, so unseen instructions still tokenize compactly.
_COMMON_WORDS_TEXT = (
    "the a an and then until once after before when while you your it is are was there this that "
    "here where which what how many much one two three four five six seven eight nine ten first "
    "second third last next other another left right up down upstairs downstairs stairs steps step "
    "hall corridor room rooms wall walls corner end side middle center open closed doorway entrance "
    "arch archway floor carpet tile wooden large small big little long short wide narrow tall round "
    "square near far close beside between along across over under above below inside outside "
    "keep follow take make reach find look face climb descend stand wait stay slightly sharp "
    "immediately just again back front rear turn turning walking going heading passing stopping "
    "yes no not can see spot toward observation observations historical action actions sequence "
    "degrees centimeters meters instruction navigation assistant helpful autonomous task devise "
    "fridge oven microwave couch bookshelf bench vase picture clock towel shower curtain pillow"
)
COMMON_WORDS = tuple(_COMMON_WORDS_TEXT.split())
NAV_TEMPLATES = (
    "{move} {direction} the {colour} {obj} and {move} into the {room}.",
    "Exit the {room}, turn {side} and stop next to the {colour} {obj}.",
    "Walk through the door into the {room} and wait by the {obj}.",
    "Go past the {colour} {obj}, then turn {side} at the {room}.",
    "Head {direction} the {room} and stop in front of the {colour} {obj}.",
)
QA_TEMPLATES = (  # the scene-QA wording of rollout/qa/scene_qa.py, plus a few more
    "What colour is the {obj} in the {room}? It is {colour}.",
    "Which room is the {colour} {obj} in? It is in the {room}.",
    "How many {obj}s are in the {room}? There are {count}.",
    "What is on your {side}? The {colour} {obj}.",
    "Where are you now? I am in the {room}, near the {colour} {obj}.",
)
# The fixed prompt text is repeated so that BPE (min_frequency 2) learns its words as whole tokens.
PROMPT_TEXTS = (SYSTEM_PROMPT, f"{NAV_TASK_INTRO}go to the room{NAV_TASK_RULES}", MEMORY_SENTENCE,
                "system\n", "user\n", "assistant\n")
PROMPT_REPEATS = 4


def builtin_corpus() -> list[str]:
    """Deterministic training text: prompt wording, conjunctions, nav and QA templates."""
    texts = [*PROMPT_TEXTS * PROMPT_REPEATS, *CONJUNCTIONS * PROMPT_REPEATS]
    texts += [f"{conj}." for conj in CONJUNCTIONS]
    texts += [" " + " ".join(INSTRUCTION_CLAUSES)] * PROMPT_REPEATS  # clause words mid-sentence too
    texts += [" ".join(COMMON_WORDS[i:] + COMMON_WORDS[:i]) for i in range(len(COMMON_WORDS))]
    for i, (room, obj, colour) in enumerate(itertools.product(ROOMS, OBJECTS, COLOURS)):
        values = {
            "room": room, "obj": obj, "colour": colour, "count": i % 7,
            "move": MOVES[i % len(MOVES)], "direction": DIRECTIONS[i % len(DIRECTIONS)],
            "side": ("left", "right")[i % 2],
        }
        texts.append(NAV_TEMPLATES[i % len(NAV_TEMPLATES)].format(**values))
        texts.append(QA_TEMPLATES[i % len(QA_TEMPLATES)].format(**values))
        texts.append(_instruction_text(i, values))
    return texts


def _instruction_text(i: int, values: dict) -> str:
    """Two of the simulator's instruction clauses joined as envs/instructions.py joins them."""
    clause_values = {"room": values["room"], "name": f"{values['colour']} {values['obj']}",
                     "goal": f"{values['colour']} {values['obj']}", "dir": values["side"]}
    first = INSTRUCTION_CLAUSES[i % len(INSTRUCTION_CLAUSES)].format(**clause_values)
    second = INSTRUCTION_CLAUSES[(7 * i + 3) % len(INSTRUCTION_CLAUSES)].format(**clause_values)
    text = first + phrasing.JOINERS[i % len(phrasing.JOINERS)] + second
    return text[0].upper() + text[1:] + "."


def build_local_tokenizer(extra_texts: Iterable[str] = (), vocab_size: int = LOCAL_VOCAB_SIZE
                          ) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE tokenizer (deterministic for the same texts) and wrap it for transformers."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(ACTION_SYMBOLS),  # room for the added action tokens
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([*builtin_corpus(), *extra_texts], trainer=trainer)
    # Actions are ordinary (decodable) added tokens: matched before BPE, so each is one id.
    tokenizer.add_tokens([AddedToken(symbol, single_word=symbol.isalpha(), normalized=False)
                          for symbol in ACTION_SYMBOLS])
    if tokenizer.get_vocab_size() > vocab_size:
        raise ValueError(f"local tokenizer has {tokenizer.get_vocab_size()} tokens, more than {vocab_size}")
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        eos_token=IM_END,
        additional_special_tokens=[IM_START, IMAGE_PLACEHOLDER, MEMORY_PLACEHOLDER],
        padding_side="right",
    )
