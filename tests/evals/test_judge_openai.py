"""The OpenAI judge against a chat-completions server started here (stdlib, 127.0.0.1): request bodies,
preferences from served logprobs, the text fallback, retries, give-ups and timeouts, each counted."""

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from simpo.errors import RecipeError
from simpo.evals.arena_hard import NO_VERDICT
from simpo.evals.judge_openai import _THINKING, OpenAIJudge
from simpo.evals.judge_prompts import arena_hard_messages

ALPACA_BODY = {"model": "judge-model", "max_tokens": 1, "temperature": 1, "logprobs": True, "top_logprobs": 5}


class Endpoint:
    """A chat-completions server: `respond(body, count)` -> (status, headers, payload, delay_s); it
    records every request body and header, and stops itself after 60 s at the latest."""

    def __init__(self):
        self.requests, self.headers, self.respond = [], [], None
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append(body)
                endpoint.headers.append(dict(self.headers))
                status, headers, payload, delay = endpoint.respond(body, len(endpoint.requests))
                time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for key, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.stopper = threading.Timer(60, self.server.shutdown)
        self.stopper.daemon = True
        self.stopper.start()

    def close(self):
        self.stopper.cancel()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    server = Endpoint()
    yield server
    server.close()


def completion(content, top_logprobs=None, finish_reason="stop"):
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
    if top_logprobs is not None:
        choice["logprobs"] = {"content": [{"token": content, "logprob": top_logprobs.get(content, -9.0),
                                           "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top_logprobs.items()]}]}
    return {"id": "x", "object": "chat.completion", "choices": [choice]}


def judge_for(endpoint, **settings):
    return OpenAIJudge("judge-model", base_url=endpoint.url, api_key=settings.pop("api_key", ""),
                       **{"base_delay": 0.001, "max_tries": 3, "timeout": 5.0, **settings})


def model_slot(body, model_output, reference_output):
    """Which identifier the request showed the model's output under, read from the prompt itself."""
    text = body["messages"][1]["content"]
    return "m" if text.index(f'"""{model_output}"""') < text.index(f'"""{reference_output}"""') else "M"


def nonzero(counters):
    return {key: value for key, value in counters.items() if value}


def test_preferences_from_the_served_logprobs(endpoint):
    # P(m) = 0.2, P(M) = 0.6 among the top five: the second output shown wins with 0.6 / 0.8 = 0.75.
    top = {"M": math.log(0.6), "m": math.log(0.2), "Both": math.log(0.1), "The": math.log(0.05), "A": math.log(0.01)}

    def respond(body, count):
        ok = {key: body.get(key) for key in ALPACA_BODY} == ALPACA_BODY and [m["role"] for m in body["messages"]] == ["system", "user"]
        return (200, {}, completion("M", top), 0) if ok else (400, {}, {"error": "bad request body"}, 0)

    endpoint.respond = respond
    items = [(f"Say something about {i}.", f"model answer {i}", f"reference answer {i}") for i in range(8)]
    preferences = judge_for(endpoint, api_key="sk-local").prefer(items)
    by_instruction = {body["messages"][1]["content"]: body for body in endpoint.requests}
    expected = []
    for instruction, model_output, reference_output in items:
        body = next(body for text, body in by_instruction.items() if f'"""{instruction}"""' in text)
        expected.append(2 - 0.75 if model_slot(body, model_output, reference_output) == "m" else 1 + 0.75)
    assert preferences == pytest.approx(expected, abs=1e-12)
    assert {1.25, 1.75} == set(round(p, 6) for p in preferences)  # the model was shown both ways
    assert endpoint.headers[0]["Authorization"] == "Bearer sk-local"


def test_only_one_identifier_in_the_top_logprobs_decides_fully(endpoint):
    endpoint.respond = lambda body, count: (200, {}, completion("m", {"m": -0.01, "Both": -5.0}), 0)
    judge = judge_for(endpoint)
    [preference] = judge.prefer([("Q", "model", "reference")])
    body = endpoint.requests[0]
    assert preference == (2.0 if model_slot(body, "model", "reference") == "m" else 1.0)
    assert "Authorization" not in endpoint.headers[0]


def test_answer_text_without_logprobs_is_a_counted_fallback(endpoint):
    endpoint.respond = lambda body, count: (200, {}, completion("M"), 0)
    judge = judge_for(endpoint)
    items = [(f"q{i}", f"model {i}", f"ref {i}") for i in range(4)]
    preferences = judge.prefer(items)
    slots = {body["messages"][1]["content"]: body for body in endpoint.requests}
    for (instruction, model_output, reference_output), preference in zip(items, preferences):
        body = next(body for text, body in slots.items() if f'"""{instruction}"""' in text)
        assert preference == (1.0 if model_slot(body, model_output, reference_output) == "m" else 2.0)
    assert nonzero(judge.counters) == {"requests": 4, "text_fallback": 4}


def test_other_answers_are_malformed(endpoint):
    answers = iter([completion("Neither", {"Neither": -0.1, "The": -2.0}), completion("M is better"), {"choices": []}, b"not json"])
    endpoint.respond = lambda body, count: (200, {}, next(answers), 0)
    judge = judge_for(endpoint, workers=1)
    assert judge.prefer([(f"q{i}", "a", "b") for i in range(4)]) == [None] * 4
    assert nonzero(judge.counters) == {"requests": 4, "malformed": 4}


def test_a_429_waits_for_retry_after_then_succeeds(endpoint):
    def respond(body, count):
        if count == 1:
            return 429, {"Retry-After": "0.3"}, {"error": "slow down"}, 0
        return 200, {}, completion("M", {"M": math.log(0.9), "m": math.log(0.1)}), 0

    endpoint.respond = respond
    judge = judge_for(endpoint, max_delay=5.0)
    start = time.perf_counter()
    [preference] = judge.prefer([("Q", "model", "reference")])
    assert time.perf_counter() - start >= 0.3  # the header's wait, not the 1 ms backoff
    assert preference == pytest.approx(1.1 if model_slot(endpoint.requests[1], "model", "reference") == "m" else 1.9, abs=1e-12)
    assert nonzero(judge.counters) == {"requests": 2, "retries": 1, "rate_limited": 1}


def test_5xx_until_the_tries_run_out_gives_none(endpoint):
    endpoint.respond = lambda body, count: (500, {}, {"error": "down"}, 0)
    judge = judge_for(endpoint, max_tries=3)
    assert judge.prefer([("Q", "model", "reference")]) == [None]
    assert judge.verdicts([("Q", "math", "a", "b")]) == [None]
    assert nonzero(judge.counters) == {"requests": 6, "retries": 4, "errors": 2}


def test_a_4xx_is_not_retried(endpoint):
    endpoint.respond = lambda body, count: (401, {}, {"error": "bad key"}, 0)
    judge = judge_for(endpoint)
    assert judge.prefer([("Q", "model", "reference")]) == [None]
    assert nonzero(judge.counters) == {"requests": 1, "errors": 1}


def test_a_4xx_warning_gives_the_servers_reason(endpoint, caplog):
    endpoint.respond = lambda body, count: (400, {}, {"error": "max_tokens 16000 is too large: the context is 2048"}, 0)
    with caplog.at_level("WARNING", logger="simpo"):
        assert judge_for(endpoint).verdicts([("Q", "math", "a", "b")]) == [None]
    assert 'HTTP 400: {"error": "max_tokens 16000 is too large: the context is 2048"}' in caplog.text


def test_judgments_capped_below_the_official_lengths(endpoint):
    asked = []

    def respond(body, count):
        asked.append(body["max_tokens"])
        return 200, {}, completion("[[A>B]]"), 0

    endpoint.respond = respond
    games = [("Q", "creative_writing", "a", "b"), ("Q", "arena-hard-v0.1", "a", "b")]
    assert judge_for(endpoint, max_tokens=5000).verdicts(games) == ["A>B", "A>B"]
    assert judge_for(endpoint, max_tokens=64).verdicts(games[:1]) == ["A>B"]
    assert sorted(asked[:2]) == [4096, 5000] and asked[2] == 64  # v0.1 keeps its 4096; v2.0's 16000 is capped


def test_a_slow_answer_times_out_and_is_retried(endpoint):
    endpoint.respond = lambda body, count: (200, {}, completion("M"), 1.0)
    judge = judge_for(endpoint, timeout=0.2, max_tries=2)
    assert judge.prefer([("Q", "model", "reference")]) == [None]
    assert nonzero(judge.counters) == {"requests": 2, "retries": 1, "timeouts": 2, "errors": 1}


def test_a_refused_connection_gives_none():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    judge = OpenAIJudge("judge-model", base_url=f"http://127.0.0.1:{port}/v1", base_delay=0.001, max_tries=2)
    assert judge.verdicts([("Q", "math", "a", "b")]) == [None]
    assert nonzero(judge.counters) == {"requests": 2, "retries": 1, "errors": 1}


def test_arena_hard_verdicts(endpoint):
    answers = {"q0": "Both are fine. My final verdict is [[A>B]].", "q1": "Close call: [[A=B]], no wait, [[b<<a]]",
               "q2": "<think>maybe [[B>>A]]</think>I cannot decide.", "q3": "Assistant B is slightly better: [B>A]"}

    def respond(body, count):
        question = body["messages"][1]["content"].split("\n")[1]
        expected = arena_hard_messages(question, "creative_writing", "answer A", "answer B")
        if (body["temperature"], body["max_tokens"], body["messages"]) != (0, 16000, expected) or "logprobs" in body:
            return 400, {}, {"error": "bad request body"}, 0
        return 200, {}, completion(answers[question], finish_reason="length" if question == "q3" else "stop"), 0

    endpoint.respond = respond
    judge = judge_for(endpoint)
    games = [(question, "creative_writing", "answer A", "answer B") for question in answers]
    assert judge.verdicts(games) == ["A>B", "A>>B", NO_VERDICT, "B>A"]  # answered without a label: not asked again
    assert nonzero(judge.counters) == {"requests": 4, "malformed": 1, "truncated": 1}


def test_arena_hard_v01_verdicts_as_v01_reads_them(endpoint):
    """v0.1 (category arena-hard-v0.1): 4096 tokens; [[..]] labels only, case-sensitive, one distinct
    label of the five; none: the judge is asked once more, with its answer in the conversation."""
    first = {"q0": "[[B>A]] and once more [[B>A]]", "q1": "[[A>B]] or rather [[A=B]]", "q2": "[b>>a] [[b>>a]]",
             "q3": "[[B<A]]", "q4": "no label", "q5": "<think>[[A>B]]</think>hmm"}
    second = {"q2": "So: [[B>>A]]", "q4": "still none", "q5": "Final: [[A>>B]]"}

    def respond(body, count):
        messages = body["messages"]
        question = messages[1]["content"].split("\n")[1]
        expected = arena_hard_messages(question, "arena-hard-v0.1", "answer A", "answer B")
        if (body["temperature"], body["max_tokens"], messages[:2]) != (0, 4096, expected):
            return 400, {}, {"error": "bad request body"}, 0
        if len(messages) == 2:
            return 200, {}, completion(first[question]), 0
        if [m["role"] for m in messages[2:]] != ["assistant", "user"] or messages[2]["content"] != _THINKING.sub("", first[question]):
            return 400, {}, {"error": "bad follow-up"}, 0
        return 200, {}, completion(second[question]), 0

    endpoint.respond = respond
    judge = judge_for(endpoint)
    games = [(question, "arena-hard-v0.1", "answer A", "answer B") for question in first]
    assert judge.verdicts(games) == ["B>A", NO_VERDICT, "B>>A", NO_VERDICT, NO_VERDICT, "A>>B"]
    assert nonzero(judge.counters) == {"requests": 9, "asked_again": 3, "malformed": 3}


def test_simpo_eval_through_an_openai_judge_records_its_counters(endpoint, tiny_model_dir, tmp_path, one_thread):
    from simpo.evals.table import load_results
    from simpo.stages.eval import parse_options, run_eval

    def respond(body, count):  # the first request is rate limited; then M (the second output) is preferred
        if count == 1:
            return 429, {"Retry-After": "0"}, {"error": "slow down"}, 0
        return 200, {}, completion("M", {"m": math.log(0.25), "M": math.log(0.75)}), 0

    endpoint.respond = respond
    model = tiny_model_dir("llama")
    run_eval(parse_options([str(model), "--output", str(tmp_path), "--benchmarks", "alpaca_eval", "--limit", "3",
                            "--max-new-tokens", "4", "--names", "tiny", "--judge", "openai:judge-model",
                            "--judge-base-url", endpoint.url]))
    result = load_results(tmp_path)["tiny"]["alpaca_eval"]
    assert result["judge"] == "openai:judge-model" and result["comparable"] is False  # 3 of 805 items
    assert result["judge_counters"] == {"requests": 4, "retries": 1, "rate_limited": 1}
    assert "judge: 1 retries, 1 rate_limited" in result["notes"]
    records = [json.loads(line) for line in (tmp_path / "tiny" / "alpaca_eval" / "records.jsonl").read_text().splitlines()]
    assert sorted({record["preference"] for record in records} - {1.25, 1.75}) == []  # 0.75 for the output shown second


def test_failed_judgments_are_never_complete_and_are_asked_again(endpoint, tiny_model_dir, tmp_path, one_thread):
    from simpo.stages.eval import parse_options, run_eval

    args = [str(tiny_model_dir("llama")), "--output", str(tmp_path), "--benchmarks", "alpaca_eval", "--limit", "4",
            "--max-new-tokens", "4", "--names", "tiny", "--judge", "openai:judge-model", "--judge-base-url", endpoint.url,
            "--shard-size", "2"]
    endpoint.respond = lambda body, count: (401, {}, {"error": "bad key"}, 0)
    with pytest.raises(RecipeError, match=r"eval tiny alpaca_eval: no judgment succeeded \(4 requests, 4 errors\); nothing was scored"):
        run_eval(parse_options(args))
    judged = next((tmp_path / "tiny" / "alpaca_eval").glob("judged-*"))
    assert not (judged / "COMPLETE").exists() and not (judged / "result.json").exists()
    assert len(endpoint.requests) == 4

    # the judge is up for all but the third request of this run: three verdicts, one failure, not final
    def respond(body, count):
        if count == 7:
            return 401, {}, {"error": "bad key"}, 0
        return 200, {}, completion("M", {"m": math.log(0.25), "M": math.log(0.75)}), 0

    endpoint.respond = respond
    run_eval(parse_options(args))
    assert len(endpoint.requests) == 8  # every item asked again
    result = json.loads((tmp_path / "tiny" / "alpaca_eval" / "result.json").read_text())
    assert "1 judgments failed and are left out" in result["notes"] and result["unfinished"]
    assert not (judged / "COMPLETE").exists() and not (judged / "result.json").exists()

    run_eval(parse_options(args))  # only the failed item is asked again; now every judgment is in
    assert len(endpoint.requests) == 9
    result = json.loads((tmp_path / "tiny" / "alpaca_eval" / "result.json").read_text())
    assert "unfinished" not in result and not any("failed" in note for note in result["notes"])
    assert (judged / "COMPLETE").exists() and (judged / "result.json").exists()
    run_eval(parse_options(args))  # a finished result is read back: no request
    assert len(endpoint.requests) == 9
