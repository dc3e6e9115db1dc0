"""`impchat serve` driven by the official openai client (and curl / raw HTTP where clients
would hide what is on the wire)."""

import base64
import http.client
import json
import subprocess
import threading

import openai
import pytest

from conftest import API_KEY, running_server

QUESTION = "What is in this picture?"


def ask(client, model_id, content, **kwargs):
    kwargs.setdefault("max_tokens", 24)
    return client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": content}], **kwargs
    )


def image_message(url: str, text: str = QUESTION):
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]


def post_raw(server, body: bytes, headers: dict | None = None):
    """POSTs bytes to /v1/chat/completions and returns (status, parsed JSON body)."""
    connection = http.client.HTTPConnection(server.address, timeout=120)
    all_headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    all_headers.update(headers or {})
    connection.request("POST", "/v1/chat/completions", body=body, headers=all_headers)
    response = connection.getresponse()
    status, payload = response.status, response.read()
    connection.close()
    return status, json.loads(payload)


def assert_openai_error(body: dict):
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]


# --- models ---------------------------------------------------------------------------------


def test_models_list_names_the_loaded_model(client, model_id):
    models = client.models.list().data
    assert len(models) == 1
    assert models[0].id == model_id
    assert models[0].object == "model"
    assert client.models.retrieve(model_id).id == model_id


# --- answers --------------------------------------------------------------------------------


def test_text_completion_has_answer_and_usage(client, model_id):
    completion = ask(client, model_id, QUESTION, max_tokens=12)
    choice = completion.choices[0]
    assert completion.object == "chat.completion"
    assert completion.model == model_id
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert 1 <= usage.completion_tokens <= 12
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # Greedy by default: asking again gives the same answer.
    again = ask(client, model_id, QUESTION, max_tokens=12)
    assert again.choices[0].message.content == choice.message.content


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client, model_id):
    completion = ask(client, model_id, QUESTION, max_completion_tokens=2)
    assert completion.usage.completion_tokens <= 2
    if completion.usage.completion_tokens == 2:
        assert completion.choices[0].finish_reason == "length"


def test_image_data_url_reaches_the_model(client, model_id, shapes_url):
    with_image = ask(client, model_id, image_message(shapes_url), max_tokens=8)
    text_only = ask(client, model_id, QUESTION, max_tokens=8)
    assert with_image.choices[0].message.content
    # The fixture's vision tower turns the image into 16 visual tokens.
    assert with_image.usage.prompt_tokens >= text_only.usage.prompt_tokens + 16


def test_system_and_assistant_turns_are_accepted(client, model_id):
    completion = client.chat.completions.create(
        model=model_id,
        max_tokens=6,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": [{"type": "text", "text": "And now?"}]},
        ],
    )
    assert completion.choices[0].message.content


def test_streaming_with_usage_matches_the_plain_answer(client, model_id, shapes_url):
    plain = ask(client, model_id, image_message(shapes_url), max_tokens=16)
    stream = ask(
        client,
        model_id,
        image_message(shapes_url),
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [plain.choices[0].finish_reason]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens == plain.usage.completion_tokens
    assert usage_chunk.usage.prompt_tokens == plain.usage.prompt_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_stop_strings_end_the_answer_before_them(client, model_id):
    full = ask(client, model_id, QUESTION, max_tokens=24).choices[0].message.content
    assert len(full) >= 6, f"answer too short to pick a stop string from: {full!r}"
    stop = full[3:6]
    expected = full[: full.index(stop)]
    for form in (stop, [stop, "never-appears-in-gibberish"]):
        stopped = ask(client, model_id, QUESTION, max_tokens=24, stop=form)
        assert stopped.choices[0].message.content == expected
        assert stopped.choices[0].finish_reason == "stop"


def test_same_seed_gives_the_same_sampled_text(client, model_id):
    def sample(seed):
        return ask(
            client, model_id, QUESTION, max_tokens=16, temperature=1.0, seed=seed
        ).choices[0].message.content

    first = sample(1234)
    assert sample(1234) == first
    others = {sample(seed) for seed in (1, 2, 3, 4)}
    assert others != {first}, "different seeds never changed the sampled text"


def test_follow_up_reuses_the_previous_session(server, client, model_id):
    question = [{"role": "user", "content": "Describe a cat."}]
    first = client.chat.completions.create(model=model_id, messages=question, max_tokens=8)
    follow_up = question + [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Shorter."},
    ]
    second = client.chat.completions.create(model=model_id, messages=follow_up, max_tokens=8)
    assert second.choices[0].message.content
    server.wait_for_log(rf"{second.id}: finished.*session reused")


# --- errors ---------------------------------------------------------------------------------


def test_malformed_json_is_400_in_openai_shape(server):
    result = subprocess.run(
        [
            "curl", "-s", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {API_KEY}",
            "-H", "Content-Type: application/json", "--data-binary", '{"model": "x", "messages": [',
            f"{server.base_url}/chat/completions",
        ],
        capture_output=True, text=True, check=True, timeout=60,
    )
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "400"
    parsed = json.loads(body)
    assert_openai_error(parsed)
    assert parsed["error"]["type"] == "invalid_request_error"
    assert "not a valid chat completion request" in parsed["error"]["message"]


def test_sse_stream_on_the_wire(server, model_id):
    request = json.dumps({
        "model": model_id, "stream": True, "max_tokens": 5,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": QUESTION}],
    })
    result = subprocess.run(
        [
            "curl", "-sN", "-D", "-", "-H", f"Authorization: Bearer {API_KEY}",
            "-H", "Content-Type: application/json",
            "--data-binary", request, f"{server.base_url}/chat/completions",
        ],
        capture_output=True, text=True, check=True, timeout=60,
    )
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    assert "content-type: text/event-stream" in head.lower()
    events = [line for line in body.split("\n") if line]
    assert all(line.startswith("data: ") for line in events), events
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 5


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        ask(client, "gpt-4o", QUESTION)
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_invalid_parameters_are_400_naming_the_parameter(client, model_id):
    for kwargs, param in [
        ({"temperature": 5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 2}, "n"),
        ({"stop": 5}, "stop"),
    ]:
        with pytest.raises(openai.BadRequestError) as caught:
            ask(client, model_id, QUESTION, **kwargs)
        assert caught.value.param == param, kwargs
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model_id, messages=[{"role": "assistant", "content": "hi"}]
        )
    assert "last message" in caught.value.message


def test_http_image_urls_are_refused_because_impchat_is_offline(client, model_id):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, model_id, image_message("https://example.com/cat.png"))
    assert "offline" in caught.value.message
    assert caught.value.param == "messages[0].content[1].image_url.url"


def test_non_image_data_urls_are_refused(client, model_id):
    pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.7\n%fake").decode()
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, model_id, image_message(pdf))
    assert "application/pdf, not an image" in caught.value.message
    # Lying about the media type does not get past the decoder either.
    fake_png = "data:image/png;base64," + base64.b64encode(b"%PDF-1.7\n%fake").decode()
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, model_id, image_message(fake_png))
    assert caught.value.body["message"].startswith("image 1:")


def test_oversized_image_and_body_are_413(server, model_id, tmp_path):
    big = base64.b64encode(bytes(17 * 1024 * 1024)).decode()
    body = json.dumps({"model": model_id, "messages": [
        {"role": "user", "content": image_message("data:image/png;base64," + big)}]})
    status, parsed = post_raw(server, body.encode())
    assert status == 413
    assert_openai_error(parsed)
    assert "limit" in parsed["error"]["message"]

    # curl sends `Expect: 100-continue` for large bodies, so the server can refuse before
    # reading 33 MiB (a plain client may see the connection closed while still sending).
    huge = tmp_path / "huge.json"
    huge.write_bytes(b'{"model": "' + b"x" * (33 * 1024 * 1024) + b'"}')
    result = subprocess.run(
        [
            "curl", "-s", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {API_KEY}",
            "-H", "Content-Type: application/json", "--data-binary", f"@{huge}",
            f"{server.base_url}/chat/completions",
        ],
        capture_output=True, text=True, check=True, timeout=60,
    )
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "413"
    assert_openai_error(json.loads(body))


def test_missing_or_wrong_api_key_is_401(server, model_id):
    for key in (None, "wrong-key"):
        headers = {"Authorization": f"Bearer {key}"} if key else {"Authorization": ""}
        body = json.dumps({"model": model_id, "messages": [{"role": "user", "content": "hi"}]})
        status, parsed = post_raw(server, body.encode(), headers)
        assert status == 401, key
        assert parsed["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        server.client(api_key="wrong-key").models.list()


def test_the_api_key_can_come_from_the_environment():
    with running_server(api_key=None, env={"IMPCHAT_API_KEY": "from-env"}) as keyed:
        with pytest.raises(openai.AuthenticationError):
            keyed.client(api_key="wrong-key").models.list()
        assert keyed.client(api_key="from-env").models.list().data


# --- concurrency ------------------------------------------------------------------------------


def test_disconnect_mid_stream_cancels_and_the_next_request_is_served(server, client, model_id):
    stream = ask(client, model_id, "Tell me a very long story.", max_tokens=3000, stream=True)
    first_chunks = [next(stream) for _ in range(3)]
    stream.close()
    completion_id = first_chunks[0].id
    match = server.wait_for_log(
        rf"{completion_id}: cancelled \(client went away\): .* (\d+) generated"
    )
    assert int(match.group(1)) < 3000
    after = ask(client, model_id, QUESTION, max_tokens=4)
    assert after.choices[0].message.content


def test_full_queue_answers_429_and_everyone_gets_an_answer():
    # Two queue slots: the first two requests are always accepted, whatever the timing.
    with running_server("--max-queue", "2", api_key=None) as busy:
        model_id = busy.client().models.list().data[0].id
        body = json.dumps({"model": model_id, "max_tokens": 400,
                           "messages": [{"role": "user", "content": "Tell me a long story."}]})
        statuses: list[int] = []
        bodies: list[dict] = []
        start = threading.Barrier(12)

        def one_request():
            start.wait()
            status, parsed = post_raw(busy, body.encode())
            statuses.append(status)
            bodies.append(parsed)

        threads = [threading.Thread(target=one_request) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert len(statuses) == 12
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(429) >= 1, statuses
        assert statuses.count(200) >= 2, statuses
        refused = next(b for s, b in zip(statuses, bodies) if s == 429)
        assert refused["error"]["code"] == "queue_full"
        assert busy.process.poll() is None


def test_cors_is_off_unless_an_origin_is_given(server):
    def preflight(address):
        connection = http.client.HTTPConnection(address, timeout=30)
        connection.request("OPTIONS", "/v1/chat/completions", headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        })
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.getheader("access-control-allow-origin")

    assert preflight(server.address) is None
    with running_server("--cors-origin", "http://localhost:3000") as with_cors:
        assert preflight(with_cors.address) == "http://localhost:3000"
