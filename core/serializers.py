"""Shapes shared by every API: the error body."""

from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every error body has a `detail`; a refused request body also names its fields."""

    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )
