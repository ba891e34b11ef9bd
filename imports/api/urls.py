from django.urls import path

from .errors import ImportJobErrorsCsvView, ImportJobErrorsView
from .views import ImportJobDetailView, ImportJobListView

urlpatterns = [
    path("", ImportJobListView.as_view(), name="import-list"),
    path("<int:pk>/", ImportJobDetailView.as_view(), name="import-detail"),
    path("<int:pk>/errors/", ImportJobErrorsView.as_view(), name="import-errors"),
    path("<int:pk>/errors.csv", ImportJobErrorsCsvView.as_view(), name="import-errors-csv"),
]
