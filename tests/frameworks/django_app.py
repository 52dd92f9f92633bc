"""Django, under WSGI (``WSGIHandler``) and ASGI (``get_asgi_application()``, routed by Channels'
``ProtocolTypeRouter`` with an ``AsyncWebsocketConsumer`` for ``/ws``): one project, this module
its settings' URLconf, configured in code as a single-file Django project does."""

import json

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,  # Django's own 404 and 500 pages, not the technical ones
        SECRET_KEY="frameworks grid",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )

from django.core.handlers.asgi import ASGIRequest  # noqa: E402
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.shortcuts import redirect as django_redirect  # noqa: E402
from django.urls import path  # noqa: E402

from . import STREAM_CHUNKS, upload_summary  # noqa: E402


def hello(request, name):
    greeting = request.GET.get("greeting", "Hello")
    return HttpResponse(f"{greeting}, {name}!", content_type="text/plain")


def json_echo(request):
    return JsonResponse({"received": json.loads(request.body)})


def form(request):
    return JsonResponse(request.POST.dict())


def upload(request):
    file = request.FILES["file"]
    return JsonResponse(upload_summary(file.name, file.read(), request.POST["note"]))


def set_cookie(request):
    response = HttpResponse("set", content_type="text/plain")
    response.set_cookie("flavour", "oat")
    return response


def get_cookie(request):
    return JsonResponse({"flavour": request.COOKIES.get("flavour")})


def redirect(request):
    return django_redirect("hello", name="redirected")


def stream(request):
    if isinstance(request, ASGIRequest):
        # Under ASGI Django wants an asynchronous iterator (a sync one is consumed in a thread,
        # with a warning).
        async def chunks():
            for chunk in STREAM_CHUNKS:
                yield chunk

        return StreamingHttpResponse(chunks(), content_type="text/plain")
    return StreamingHttpResponse(iter(STREAM_CHUNKS), content_type="text/plain")


def error(request):
    raise RuntimeError("view failed")


urlpatterns = [
    path("hello/<str:name>", hello, name="hello"),
    path("json", json_echo),
    path("form", form),
    path("upload", upload),
    path("cookies/set", set_cookie),
    path("cookies/get", get_cookie),
    path("redirect", redirect),
    path("stream", stream),
    path("error", error),
]


def make_wsgi_app():
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def make_asgi_app():
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.core.asgi import get_asgi_application

    class Echo(AsyncWebsocketConsumer):
        async def connect(self):
            await self.accept()

        async def receive(self, text_data=None, bytes_data=None):
            if text_data == "bye":
                await self.close(code=1000)
            else:
                await self.send(text_data=f"echo: {text_data}")

    class EchoBytes(AsyncWebsocketConsumer):
        async def receive(self, text_data=None, bytes_data=None):
            await self.send(bytes_data=b"echo: " + bytes_data)

    return ProtocolTypeRouter({
        "http": get_asgi_application(),
        "websocket": URLRouter([
            path("ws", Echo.as_asgi()),
            path("ws/bytes", EchoBytes.as_asgi()),
        ]),
    })
