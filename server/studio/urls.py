"""API routes. The names are stable: the UI and scripts reverse them (listed in the README)."""

from __future__ import annotations

from django.urls import path

from server.studio import apis, apis_pacs

urlpatterns = [
    path("templates/", apis.TemplateListApi.as_view(), name="studio-templates"),
    path("projects/", apis.ProjectListApi.as_view(), name="studio-projects"),
    path("projects/<int:project_id>/", apis.ProjectDetailApi.as_view(), name="studio-project"),
    path("projects/<int:project_id>/members/", apis.MemberListApi.as_view(), name="studio-members"),
    path("projects/<int:project_id>/members/<int:user_id>/", apis.MemberDetailApi.as_view(), name="studio-member"),
    path("projects/<int:project_id>/cases/", apis.CaseListApi.as_view(), name="studio-cases"),
    path("projects/<int:project_id>/worklist/next/", apis.WorklistNextApi.as_view(), name="studio-worklist-next"),
    path("projects/<int:project_id>/import/", apis.ImportApi.as_view(), name="studio-import"),
    path("projects/<int:project_id>/export/", apis.ExportApi.as_view(), name="studio-export"),
    path("projects/<int:project_id>/metrics/", apis.MetricsApi.as_view(), name="studio-metrics"),
    path("projects/<int:project_id>/models/", apis.ModelListApi.as_view(), name="studio-models"),
    path("projects/<int:project_id>/jobs/", apis.JobListApi.as_view(), name="studio-jobs"),
    path("projects/<int:project_id>/audit/", apis.AuditListApi.as_view(), name="studio-audit"),
    path("projects/<int:project_id>/preferences/", apis.PreferencesApi.as_view(), name="studio-preferences"),
    path("projects/<int:project_id>/training-jobs/", apis.TrainingJobsApi.as_view(), name="training-jobs"),
    path(
        "projects/<int:project_id>/training-readiness/", apis.TrainingReadinessApi.as_view(), name="training-readiness"
    ),
    path("projects/<int:project_id>/training-policy/", apis.TrainingPolicyApi.as_view(), name="training-policy"),
    path("cases/<int:case_id>/", apis.CaseDetailApi.as_view(), name="studio-case"),
    path("cases/<int:case_id>/image/", apis.CaseImageApi.as_view(), name="studio-case-image"),
    path("cases/<int:case_id>/report/", apis.CaseReportApi.as_view(), name="studio-case-report"),
    path("cases/<int:case_id>/masks/", apis.CaseMaskListApi.as_view(), name="studio-case-masks"),
    path("cases/<int:case_id>/accept/", apis.CaseAcceptApi.as_view(), name="studio-case-accept"),
    path("cases/<int:case_id>/reject/", apis.CaseRejectApi.as_view(), name="studio-case-reject"),
    path("cases/<int:case_id>/open/", apis.CaseOpenApi.as_view(), name="studio-case-open"),
    path("cases/<int:case_id>/release/", apis.CaseReleaseApi.as_view(), name="studio-case-release"),
    path("masks/<int:mask_id>/png/", apis.MaskPngApi.as_view(), name="studio-mask-png"),
    path("masks/<int:mask_id>/probabilities/", apis.MaskProbabilitiesApi.as_view(), name="studio-mask-probabilities"),
    path("masks/<int:mask_id>/restore/", apis.MaskRestoreApi.as_view(), name="studio-mask-restore"),
    path("models/<int:model_id>/activate/", apis.ModelActivateApi.as_view(), name="studio-model-activate"),
    path("jobs/<int:job_id>/", apis.JobDetailApi.as_view(), name="studio-job"),
    path("jobs/<int:job_id>/cancel/", apis.JobCancelApi.as_view(), name="studio-job-cancel"),
    path("pacs/", apis_pacs.PacsStatusApi.as_view(), name="studio-pacs"),
    path("projects/<int:project_id>/pacs/studies/", apis_pacs.PacsStudyListApi.as_view(), name="studio-pacs-studies"),
    path(
        "projects/<int:project_id>/pacs/studies/<str:study_uid>/",
        apis_pacs.PacsStudyDetailApi.as_view(),
        name="studio-pacs-study",
    ),
    path("projects/<int:project_id>/pacs/import/", apis_pacs.PacsImportApi.as_view(), name="studio-pacs-import"),
    path("projects/<int:project_id>/pacs/store/", apis_pacs.PacsStoreManyApi.as_view(), name="studio-pacs-store"),
    path("cases/<int:case_id>/seg/", apis_pacs.CaseSegApi.as_view(), name="studio-case-seg"),
    path("cases/<int:case_id>/seg/store/", apis_pacs.CaseSegStoreApi.as_view(), name="studio-case-seg-store"),
]
