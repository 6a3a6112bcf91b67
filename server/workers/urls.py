from __future__ import annotations

from django.urls import path

from server.workers import apis

urlpatterns = [
    path("projects/<int:project_id>/training-jobs/", apis.TrainingJobsApi.as_view(), name="training-jobs"),
    path(
        "projects/<int:project_id>/training-readiness/", apis.TrainingReadinessApi.as_view(), name="training-readiness"
    ),
    path("projects/<int:project_id>/training-policy/", apis.TrainingPolicyApi.as_view(), name="training-policy"),
    # The URL name stays the studio's: the UI and scripts reverse it (README).
    path("jobs/<int:job_id>/cancel/", apis.JobCancelApi.as_view(), name="studio-job-cancel"),
]
