// The REST endpoints the UI uses, in one place (paths follow server/studio/urls.py and server/workers/urls.py).

export const paths = {
  projects: () => "/api/projects/",
  members: (projectId) => `/api/projects/${projectId}/members/`,
  member: (projectId, userId) => `/api/projects/${projectId}/members/${userId}/`,
  audit: (projectId) => `/api/projects/${projectId}/audit/`,
  import: (projectId) => `/api/projects/${projectId}/import/`,
  preferences: (projectId) => `/api/projects/${projectId}/preferences/`,
  project: (id) => `/api/projects/${id}/`,
  templates: () => "/api/templates/",
  cases: (projectId) => `/api/projects/${projectId}/cases/`,
  case: (id) => `/api/cases/${id}/`,
  caseImage: (id) => `/api/cases/${id}/image/`,
  caseHU: (id) => `/cases/${id}/hu/`,
  report: (caseId) => `/api/cases/${caseId}/report/`,
  masks: (caseId) => `/api/cases/${caseId}/masks/`,
  maskPng: (maskId) => `/api/masks/${maskId}/png/`,
  maskProbabilities: (maskId) => `/api/masks/${maskId}/probabilities/`,
  maskRestore: (maskId) => `/api/masks/${maskId}/restore/`,
  accept: (caseId) => `/api/cases/${caseId}/accept/`,
  reject: (caseId) => `/api/cases/${caseId}/reject/`,
  propose: (caseId) => `/cases/${caseId}/propose/`, // annotator_ui view (no REST equivalent yet)
  release: (caseId) => `/api/cases/${caseId}/release/`,
  caseOpen: (caseId) => `/api/cases/${caseId}/open/`, // first open: the start of "seconds to accept"
  pseudoPng: (caseId) => `/cases/${caseId}/pseudo.png`, // annotator_ui view
  next: (projectId) => `/api/projects/${projectId}/worklist/next/`,
  trainingJobs: (projectId) => `/api/projects/${projectId}/training-jobs/`,
  readiness: (projectId) => `/api/projects/${projectId}/training-readiness/`,
  projectJobs: (projectId) => `/api/projects/${projectId}/jobs/`,
  job: (id) => `/api/jobs/${id}/`,
  jobCancel: (id) => `/api/jobs/${id}/cancel/`,
  jobSocket: (id) => `/ws/jobs/${id}/`,
  projectSocket: (id) => `/ws/projects/${id}/`,
  models: (projectId) => `/api/projects/${projectId}/models/`,
  activate: (modelId) => `/api/models/${modelId}/activate/`,
  export: (projectId) => `/api/projects/${projectId}/export/`,
  metrics: (projectId) => `/api/projects/${projectId}/metrics/`,
  pacs: () => "/api/pacs/",
  pacsStudies: (projectId) => `/api/projects/${projectId}/pacs/studies/`,
  pacsStudy: (projectId, studyUid) => `/api/projects/${projectId}/pacs/studies/${encodeURIComponent(studyUid)}/`,
  pacsImport: (projectId) => `/api/projects/${projectId}/pacs/import/`,
  pacsStore: (projectId) => `/api/projects/${projectId}/pacs/store/`,
  caseSeg: (caseId) => `/api/cases/${caseId}/seg/`,
  casePage: (projectId, caseId) => `/projects/${projectId}/cases/${caseId}/`,
};

/** ws:// or wss:// URL for a websocket path on this origin. */
export function socketUrl(path, location = globalThis.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
