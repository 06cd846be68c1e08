"""The navigation prompt wording and chat markers (DESIGN.md 3.5), shared by the processor and the
tokenizer's training corpus. Change nothing here without retraining: the text is the contract."""

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
SYSTEM_PROMPT = "You are a helpful assistant."
NAV_TASK_INTRO = "You are an autonomous navigation assistant. Your task is to "
NAV_TASK_RULES = (
    ". Devise an action sequence to follow the instruction using the four actions: TURN LEFT (←) or "
    "TURN RIGHT (→) by 15 degrees, MOVE FORWARD (↑) by 25 centimeters, or STOP."
)
MEMORY_SENTENCE = " These are your historical observations: "
# Action symbols by envs.actions.Action value: 0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT.
ACTION_SYMBOLS = ("STOP", "↑", "←", "→")
