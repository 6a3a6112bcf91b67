// Moving between cases: the worklist's order as the editor's queue ("n of N") and the cases opened
// in this session (the "Previous case" button). DOM-free: pure functions over plain data, which the
// pages keep in sessionStorage.

/**
 * A queue snapshot from the worklist: the ids in the order shown and the total count (the list may
 * show only the first page of a longer worklist).
 */
export function makeQueue(ids, total = ids.length) {
  return { ids: ids.map(Number), total: Math.max(total, ids.length) };
}

/** {index (1-based), total} of `caseId` in the queue, or null when it is not in it. */
export function queuePosition(queue, caseId) {
  if (!queue || !Array.isArray(queue.ids)) return null;
  const i = queue.ids.indexOf(Number(caseId));
  return i < 0 ? null : { index: i + 1, total: queue.total ?? queue.ids.length };
}

/** The visit history after opening `caseId` (most recent last, no immediate repeats, at most `max`). */
export function pushVisit(history, caseId, max = 50) {
  const id = Number(caseId);
  const list = (Array.isArray(history) ? history : []).filter((x) => Number.isInteger(x));
  if (list[list.length - 1] === id) return list;
  return [...list, id].slice(-max);
}

/** The case opened before `caseId` in the history (skipping `caseId` itself), or null. */
export function previousCase(history, caseId) {
  const id = Number(caseId);
  const list = Array.isArray(history) ? history : [];
  let i = list.lastIndexOf(id);
  if (i < 0) i = list.length;
  for (let k = i - 1; k >= 0; k--) if (list[k] !== id) return list[k];
  return null;
}

/** The history after going back from `caseId` to the previous case: both drop off the end. */
export function popVisit(history, caseId) {
  const list = Array.isArray(history) ? [...history] : [];
  while (list.length && list[list.length - 1] === Number(caseId)) list.pop();
  return list;
}
