"""The judge of the leaderboards: a model behind an OpenAI-compatible chat-completions endpoint.

AlpacaEval 2, as its weighted judge (`alpaca_eval_clf_gpt4_turbo`, gpt-4-1106-preview) does: one
request per item with `max_tokens 1, temperature 1, logprobs true, top_logprobs 5`; the judge's
probability that the second output shown is better is P(M) / (P(m) + P(M)), from the top logprobs of
the first answer token, mapped to the model's side (`judges.model_preference`). An endpoint that
returns no logprobs (or none for m/M) gives the answer text instead: `m` -> 0, `M` -> 1, counted as
`text_fallback`; any other answer is `malformed`.

Arena-Hard, as arena-hard-auto's judgment of each version: temperature 0, the system prompt of the
question's category. v0.1 (category `arena-hard-v0.1`): up to 4096 tokens; the verdict is the one
distinct `[[..]]` label of the five, case-sensitive; when the judgment holds no `[[..]]` label the
judge is asked once more to finish with one (its answer appended to the conversation; counted in
`asked_again`; the wording of that request is simpo's), and the labels of both answers count;
several different labels, or a label not of the five, give no verdict. v2.0: up to 16000 tokens,
one request, the last label of the first official pattern that matches the upper-cased text. A
reasoning model's `<think>` block is removed first (the official API clients return only the answer).

HTTP with the standard library only. 429, 5xx, timeouts and connection errors are retried with
exponential backoff (a `Retry-After` header, when sent, sets the wait), up to `max_tries` requests;
then the item is None and counted in `errors`. Other HTTP errors (400, 401, ...) are not retried.
Requests run on a thread pool of `workers`.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import math
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ..config.judge import OPENAI_URL
from ..errors import RecipeError
from .arena_hard import JUDGE_MAX_TOKENS, NO_VERDICT, V01, V01_JUDGE_ATTEMPTS, V01_LABELS, version_of_category
from .judge_prompts import alpaca_eval_messages, arena_hard_messages, parse_arena_hard_verdict, parse_arena_hard_verdict_v01
from .judges import Judge, canonical_verdict, model_preference, shown_order

logger = logging.getLogger("simpo")

_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)  # a reasoning model's thoughts hold no verdict
_FINISH = "Please complete your evaluation and end it with your final verdict label."  # v0.1's second request


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


class OpenAIJudge(Judge):
    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, workers: int = 8,
                 max_tries: int = 6, timeout: float = 120.0, base_delay: float = 1.0, max_delay: float = 60.0,
                 max_tokens: int | None = None):
        super().__init__(f"openai:{model}")
        self.model, self.max_tokens = model, max_tokens  # max_tokens: Arena-Hard judgments' cap below the official one
        self.base_url = (base_url or OPENAI_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if self.base_url == OPENAI_URL and not self.api_key:
            raise RecipeError(f"judge {self.name} needs an API key: set OPENAI_API_KEY, or set the judge's base_url "
                              "to an OpenAI-compatible server")
        for setting, value, least in (("workers", workers, 1), ("max_tries", max_tries, 1)):
            if not isinstance(value, int) or value < least:
                raise RecipeError(f"judge {setting} {value!r} must be a whole number of at least {least}")
        self.workers, self.max_tries = workers, max_tries
        self.timeout, self.base_delay, self.max_delay = timeout, base_delay, max_delay

    # --- HTTP ---

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        delay = retry_after if retry_after is not None else self.base_delay * 2**attempt
        time.sleep(min(delay, self.max_delay))

    def _post(self, body: dict) -> dict | None:
        """The endpoint's JSON answer to `body`, or None (counted) when none comes back."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode("utf-8")
        problem = ""
        for attempt in range(self.max_tries):
            if attempt:
                self.count("retries")
            self.count("requests")
            request = urllib.request.Request(f"{self.base_url}/chat/completions", data=data, headers=headers, method="POST")
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as err:
                retry_after = _retry_after(err.headers.get("Retry-After") if err.headers else None)
                problem = f"HTTP {err.code}"
                if err.code < 500 and err.code != 429:  # the server's own words: a context too short, an unknown model, ...
                    try:
                        problem += ": " + " ".join(err.read(400).decode(errors="replace").split())
                    except OSError:
                        pass
                err.close()
                if err.code == 429:
                    self.count("rate_limited")
                elif err.code < 500:
                    self.count("errors")
                    logger.warning("judge %s: %s from %s, not retried", self.name, problem, self.base_url)
                    return None
            except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, refused or reset connections
                reason = getattr(err, "reason", err)
                if isinstance(reason, TimeoutError):
                    self.count("timeouts")
                problem = f"{type(reason).__name__}: {reason}"
            else:
                try:
                    return json.loads(payload)
                except ValueError:
                    self.count("malformed")
                    return None
            if attempt + 1 < self.max_tries:
                self._wait(attempt, retry_after)
        self.count("errors")
        logger.warning("judge %s: gave up after %d requests (%s)", self.name, self.max_tries, problem)
        return None

    def _map(self, function, inputs: list) -> list:
        if not inputs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(inputs))) as pool:
            return list(pool.map(function, inputs))

    # --- AlpacaEval ---

    def _second_share(self, response: dict) -> float | None:
        """P(M) / (P(m) + P(M)) from the first token's top logprobs; the answer text when there are
        none for m or M; None when neither tells."""
        choice = response["choices"][0]
        first = ((choice.get("logprobs") or {}).get("content") or [{}])[0] or {}
        logprobs = {entry["token"]: entry["logprob"] for entry in first.get("top_logprobs") or []
                    if entry.get("token") in ("m", "M") and entry.get("logprob") is not None}
        if logprobs:
            top = max(logprobs.values())
            weight_m, weight_big_m = (math.exp(logprobs.get(token, -math.inf) - top) for token in ("m", "M"))
            return weight_big_m / (weight_m + weight_big_m)
        text = ((choice.get("message") or {}).get("content") or "").strip()
        if text in ("m", "M"):
            self.count("text_fallback")
            return 1.0 if text == "M" else 0.0
        return None

    def _prefer_one(self, item: tuple[str, str, str]) -> float | None:
        instruction, model_output, reference_output = item
        output_1, output_2, model_first = shown_order(instruction, model_output, reference_output)
        body = {"model": self.model, "messages": alpaca_eval_messages(instruction, output_1, output_2),
                "max_tokens": 1, "temperature": 1, "logprobs": True, "top_logprobs": 5}
        response = self._post(body)
        if response is None:
            return None
        try:
            share = self._second_share(response)
        except (KeyError, IndexError, TypeError, AttributeError):
            share = None
        if share is None:
            self.count("malformed")
            return None
        return model_preference(share, model_first)

    def prefer(self, items: list[tuple[str, str, str]]) -> list[float | None]:
        return self._map(self._prefer_one, items)

    # --- Arena-Hard ---

    def _judgment(self, messages: list[dict], max_tokens: int) -> str | None:
        """The judge's answer text (its <think> block removed), or None when no answer came back."""
        response = self._post({"model": self.model, "messages": messages, "temperature": 0, "max_tokens": max_tokens})
        if response is None:
            return None
        try:
            choice = response["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            text, choice = "", {}
        if choice.get("finish_reason") == "length":
            self.count("truncated")
        return _THINKING.sub("", text)

    def _verdict_one(self, game: tuple[str, str, str, str]) -> str | None:
        question, category, answer_a, answer_b = game
        messages = arena_hard_messages(question, category, answer_a, answer_b)
        version = version_of_category(category)
        limit = min(JUDGE_MAX_TOKENS[version], self.max_tokens or JUDGE_MAX_TOKENS[version])
        if version == V01:
            judgment, verdict = "", None
            for attempt in range(V01_JUDGE_ATTEMPTS):
                text = self._judgment(messages, limit)
                if text is None:
                    return None
                judgment += "\n" + text
                label, ask_again = parse_arena_hard_verdict_v01(judgment)
                verdict = label if label in V01_LABELS else None
                if not ask_again or attempt + 1 == V01_JUDGE_ATTEMPTS:
                    break
                self.count("asked_again")
                messages = [*messages, {"role": "assistant", "content": text}, {"role": "user", "content": _FINISH}]
        else:
            text = self._judgment(messages, limit)
            if text is None:
                return None
            verdict = canonical_verdict(parse_arena_hard_verdict(text))  # a mirrored label scores as its canonical one
        if verdict is None:
            self.count("malformed")
            return NO_VERDICT
        return verdict

    def verdicts(self, games: list[tuple[str, str, str, str]]) -> list[str | None]:
        return self._map(self._verdict_one, games)
