from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from annotator_ui import views

app_name = "ui"

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="annotator_ui/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="/login/"), name="logout"),
    path("", views.projects_page, name="projects"),
    path("projects/<int:project_id>/", views.worklist_page, name="worklist"),
    path("projects/<int:project_id>/cases/<int:case_id>/", views.case_page, name="case"),
    path("projects/<int:project_id>/jobs/", views.jobs_page, name="jobs"),
    path("projects/<int:project_id>/export/", views.export_page, name="export"),
    path("projects/<int:project_id>/pacs/", views.pacs_page, name="pacs"),
    path("projects/<int:project_id>/admin/", views.project_admin_page, name="project-admin"),
    path("cases/<int:case_id>/hu/", views.case_hu, name="case-hu"),
    path("cases/<int:case_id>/pseudo.png", views.case_pseudo_png, name="case-pseudo"),
    path("cases/<int:case_id>/propose/", views.case_propose, name="case-propose"),
]
