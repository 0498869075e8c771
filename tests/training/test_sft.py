"""The SFT loss: the token mean of -log pi over the assistant tokens, equal to plain transformers
(full logits, one conversation per forward) in value on the real SmolLM2 and in gradient on a tiny
Llama, in both layouts; accumulated micro-batches weigh every assistant token the same."""

import pytest
import torch
from transformers import AutoTokenizer

from simpo.config.sft import SFTConfig
from simpo.data.sft import ConversationCollator, ConversationEncoder, pack
from simpo.training.sft import SFTTrainer

ASK = {"role": "user", "content": "What is 2 + 3?"}
CONVERSATIONS = [
    [ASK, {"role": "assistant", "content": "2 + 3 = 5. The answer is 5."}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Is 417 even or odd?"},
     {"role": "assistant", "content": "417 is odd, because its last digit is 7."}, {"role": "user", "content": "And 418?"},
     {"role": "assistant", "content": "418 is even."}],
    [{"role": "user", "content": "Sort 9, 2, 5."}, {"role": "assistant", "content": "2, 5, 9."}],
]


def encoded(tokenizer) -> list[dict]:
    encoder = ConversationEncoder(tokenizer, 256)
    return [encoder.encode({"messages": messages}, f"row {n}") for n, messages in enumerate(CONVERSATIONS, 1)]


def rows(conversations, groups) -> list[dict]:
    """Packed rows holding the conversations of each group."""
    out = []
    for group in groups:
        packed = pack({key: [conversations[i][key] for i in group] for key in ("input_ids", "scored")}, max_tokens=10_000)
        out.append({key: values[0] for key, values in packed.items()})
    return out


def plain_nll(model, conversations) -> tuple[torch.Tensor, int]:
    """Plain transformers: each conversation alone, every position's logits, cross-entropy of each
    assistant token from the position before it. The sum and the count."""
    total, count = 0, 0
    for conversation in conversations:
        ids = torch.tensor([conversation["input_ids"]])
        logits = model(input_ids=ids).logits[0].float()
        targets = torch.tensor(conversation["scored"][1:])
        total = total + torch.nn.functional.cross_entropy(logits[:-1][targets], ids[0, 1:][targets], reduction="sum")
        count += int(targets.sum())
    return total, count


def trainer_for(model, tokenizer, tmp_path, **args) -> SFTTrainer:
    config = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", disable_tqdm=True, **args)
    return SFTTrainer(model=model, args=config, processing_class=tokenizer, train_dataset=[{"input_ids": [0], "scored": [False], "lengths": [1]}])


def grads(model, value) -> dict[str, torch.Tensor]:
    model.zero_grad()
    value.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk_size", [256, 0])
def test_packed_loss_equals_plain_transformers_on_smollm2(chunk_size, smollm2_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    conversations = encoded(tokenizer)
    with torch.no_grad():
        total, count = plain_nll(model, conversations)
    trainer = trainer_for(model, tokenizer, tmp_path, logps_chunk_size=chunk_size)
    batch = ConversationCollator(tokenizer.pad_token_id, padding_free=True)(rows(conversations, [[0, 1], [2]]))
    assert batch["input_ids"].shape == (1, sum(len(c["input_ids"]) for c in conversations))
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
    assert abs(loss.item() - (total / count).item()) < 1e-5


@pytest.mark.parametrize("padding_free", [True, False])
def test_gradient_equals_plain_full_logits_on_tiny_llama(padding_free, tiny_model_dir, tmp_path):
    from helpers import load_causal_lm

    folder = tiny_model_dir("llama")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = load_causal_lm(folder, untie=True)
    conversations = encoded(tokenizer)
    total, count = plain_nll(model, conversations)
    expected = grads(model, total / count)
    trainer = trainer_for(model, tokenizer, tmp_path, logps_chunk_size=16, packing=padding_free)
    batch = ConversationCollator(tokenizer.pad_token_id, padding_free)(rows(conversations, [[0, 1], [2]]))
    loss = trainer.compute_loss(model, batch)
    assert abs(loss.item() - (total / count).item()) < 1e-6
    got = grads(model, loss)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        assert (got[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name


def test_accumulated_micro_batches_weigh_every_assistant_token_the_same(tiny_model_dir, tmp_path):
    """Trainer counts the step's assistant tokens from `shift_labels` and passes the count to each
    micro-batch's loss; their sum is the token mean over the step, not a mean of batch means."""
    from helpers import load_causal_lm

    folder = tiny_model_dir("llama")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = load_causal_lm(folder)
    conversations = encoded(tokenizer)
    collate = ConversationCollator(tokenizer.pad_token_id)
    micro_batches = [collate(rows(conversations, [[0]])), collate(rows(conversations, [[1], [2]]))]
    trainer = trainer_for(model, tokenizer, tmp_path, gradient_accumulation_steps=2)
    steps_tokens = trainer._get_num_items_in_batch(micro_batches, torch.device("cpu"))
    assert int(steps_tokens) == sum(sum(c["scored"][1:]) for c in conversations)
    with torch.no_grad():
        total, count = plain_nll(model, conversations)
        accumulated = sum(trainer.compute_loss(model, batch, num_items_in_batch=steps_tokens) for batch in micro_batches)
        batch_means = sum(trainer.compute_loss(model, batch) for batch in micro_batches) / 2
    assert abs(accumulated.item() - (total / count).item()) < 1e-6
    assert abs(batch_means.item() - (total / count).item()) > 1e-3  # the two micro-batches hold unequal token counts


def test_eval_loss_is_the_token_mean_over_the_held_out_conversations(tiny_model_dir, tmp_path):
    from helpers import load_causal_lm

    folder = tiny_model_dir("llama")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = load_causal_lm(folder)
    conversations = encoded(tokenizer)
    held_out = rows(conversations, [[0], [1, 2]])  # two batches of one row, unequal in assistant tokens
    config = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", disable_tqdm=True, per_device_eval_batch_size=1)
    trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer, train_dataset=held_out, eval_dataset=held_out)
    with torch.no_grad():
        total, count = plain_nll(model, conversations)
    assert abs(trainer.evaluate()["eval_loss"] - (total / count).item()) < 1e-6
