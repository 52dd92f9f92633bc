import httpx


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


def test_get(server_factory):
    with server_factory(hello, lifespan="off") as srv:
        response = httpx.get(srv.url + "/")
        assert response.status_code == 200
        assert response.text == "Hello, world!"
        assert response.headers["content-length"] == "13"
