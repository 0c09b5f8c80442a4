from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("info", views.info, name="info"),
    path("redirect", views.to_index, name="redirect"),
    path("form", views.form, name="form"),
    path("upload", views.upload, name="upload"),
    path("stream", views.stream, name="stream"),
    path("session", views.counter, name="session"),
    path("boom", views.boom, name="boom"),
]
