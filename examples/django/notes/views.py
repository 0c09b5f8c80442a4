import hashlib

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Note


def index(request):
    return render(request, "notes/index.html", {"notes": Note.objects.order_by("-id")[:10]})


def info(request):
    """What the app sees of its place: routes never see the prefix, generated URLs carry it."""
    return JsonResponse({
        "script_name": request.META.get("SCRIPT_NAME", ""),
        "path_info": request.path_info,
        "url": reverse("info"),
    })


def to_index(request):
    return redirect("index")


def form(request):
    """A CSRF-protected form that stores a Note (CsrfViewMiddleware checks the POST)."""
    if request.method == "POST":
        note = Note.objects.create(text=request.POST["name"])
        return HttpResponse(f"Hello, {note.text}!", content_type="text/plain")
    return render(request, "notes/form.html")


# An API endpoint for scripts, so no CSRF token; the form above keeps the protection.
@csrf_exempt
@require_POST
def upload(request):
    f = request.FILES["file"]
    data = f.read()
    return JsonResponse({"name": f.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})


def stream(request):
    n = int(request.GET.get("n", "5"))
    return StreamingHttpResponse((f"chunk {i}\n" for i in range(n)), content_type="text/plain")


def counter(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(f"visits: {request.session['visits']}", content_type="text/plain")


def boom(request):
    raise RuntimeError("the django example's deliberate error")
