from __future__ import annotations

from django.urls import path

from server.workers import apis

urlpatterns = [
    path("projects/<int:project_id>/training-jobs/", apis.TrainingJobsApi.as_view(), name="training-jobs"),
    path(
        "projects/<int:project_id>/training-readiness/", apis.TrainingReadinessApi.as_view(), name="training-readiness"
    ),
    path("projects/<int:project_id>/training-policy/", apis.TrainingPolicyApi.as_view(), name="training-policy"),
    path("projects/<int:project_id>/jobs/", apis.ProjectJobsApi.as_view(), name="project-jobs"),
    path("projects/<int:project_id>/models/", apis.ModelVersionsApi.as_view(), name="project-models"),
    path("jobs/<int:job_id>/", apis.JobApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel/", apis.JobCancelApi.as_view(), name="job-cancel"),
    path("models/<int:model_id>/activate/", apis.ModelActivateApi.as_view(), name="model-activate"),
]
