from django.urls import path

from .views import ImportJobDetailView, ImportJobListView

urlpatterns = [
    path("", ImportJobListView.as_view(), name="import-list"),
    path("<int:pk>/", ImportJobDetailView.as_view(), name="import-detail"),
]
