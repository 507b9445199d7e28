"""A view that writes a row and enqueues a job about it in one transaction."""

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from pyresqueworker.contrib.django import enqueue_on_commit

from .models import Order


def place_order(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        order = Order.objects.create(name=request.POST["name"])
        enqueue_on_commit("Shop::CheckOrder", order.pk)
    return JsonResponse({"id": order.pk})
