"""How far a candidate adapter moved from the one in service on ordinary text: perplexity and KL.

The text is AlpacaEval's everyday instructions with an answer (the shorter of its two models', cut as
the trainer cuts them) that the tuned assistant was *not* trained on: the same shuffle the assistant's
SFT config draws its AlpacaEval examples from, after the examples it used. Both adapters score the
same tokens of each answer (the assistant's turn, through the served chat template):

* perplexity of each: exp of the mean negative log-likelihood per answer token; a safety update that
  raises it has made the model worse at ordinary answers;
* KL(serving || candidate) per answer token: how much the candidate's next-token distribution differs
  from what users get today (DPO's β bounds this; SFT does not).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from trainer.config import SFTConfig, load_config
from trainer.datasets import Conversation, alpaca_conversations

__all__ = ["ASSISTANT_CONFIG", "drift", "heldout_conversations"]

ASSISTANT_CONFIG = Path(__file__).resolve().parent / "configs" / "assistant.yaml"


def heldout_conversations(data_dir: Path, count: int) -> list[Conversation]:
    """``count`` AlpacaEval conversations the assistant's SFT (``configs/assistant.yaml``) left out."""
    used = load_config(SFTConfig, ASSISTANT_CONFIG)
    everything = alpaca_conversations(data_dir, 10**6, used.alpaca_max_words, used.seed)
    return everything[used.alpaca_examples :][:count]


def drift(
    model_dir: Path,
    serving: Path,
    candidate: Path,
    conversations: list[Conversation],
    *,
    max_length: int = 384,
    threads: int | None = None,
) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.chat import served_template, tokenize

    if threads is not None:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    template = served_template(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, local_files_only=True)
    with warnings.catch_warnings():  # peft calls a transformers name that transformers has deprecated
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        model: Any = PeftModel.from_pretrained(base, str(serving), adapter_name="serving")
        model.load_adapter(str(candidate), adapter_name="candidate")
    model.eval()
    nll = {"serving": 0.0, "candidate": 0.0}
    kl, tokens, texts = 0.0, 0, 0
    with torch.no_grad():
        for conversation in conversations:
            tokenized = tokenize(tokenizer, conversation.as_messages(), template)
            ids = torch.tensor([tokenized.input_ids[:max_length]])
            mask = torch.tensor(tokenized.assistant_masks[:max_length][1:], dtype=torch.bool)
            if not mask.any():
                continue
            targets = ids[0, 1:][mask]
            logprobs = {}
            for name in ("serving", "candidate"):
                model.set_adapter(name)
                logits = model(input_ids=ids).logits[0, :-1][mask].float()
                logprobs[name] = F.log_softmax(logits, dim=-1)
                nll[name] -= float(logprobs[name].gather(1, targets[:, None]).sum())
            kl += float(
                F.kl_div(logprobs["candidate"], logprobs["serving"], log_target=True, reduction="sum")
            )
            tokens += int(mask.sum())
            texts += 1
    if not tokens:
        raise ValueError("no answer tokens to score")
    return {
        "texts": texts,
        "tokens": tokens,
        "perplexity": {name: math.exp(value / tokens) for name, value in nll.items()},
        "kl_per_token": kl / tokens,
    }
