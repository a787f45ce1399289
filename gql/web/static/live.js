// Live updates over one websocket (graphql-transport-ws, with the maintained `graphql-ws` client):
// `jobUpdated` for the job on screen, `jobsUpdated` for the history. The token goes in the
// `connection_init` payload, never in the socket's URL.

import { JOB_FRAGMENT } from "./api.js";
import { createClient } from "./vendor/graphql-ws/client.js";

export class Live {
  constructor({ graphqlPath, getToken, onConnection = () => {} }) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.client = createClient({
      url: `${scheme}://${location.host}${graphqlPath}`,
      // Asked on every (re)connect, so a refreshed token is used after a drop.
      connectionParams: async () => ({ Authorization: `Bearer ${await getToken()}` }),
      retryAttempts: 8,
      on: { connected: () => onConnection(true), closed: () => onConnection(false) },
    });
  }

  /** Calls onJob with the job's state now and at every change, until it is finished; onError
   *  with a message for the person. Returns a function that stops watching. */
  watchJob(id, { onJob, onError }) {
    return this.client.subscribe(
      { query: `subscription Job($id: ID!) { jobUpdated(id: $id) { ...JobFields } } ${JOB_FRAGMENT}`, variables: { id } },
      {
        next: ({ data, errors }) => (errors?.length ? onError(errors[0].message) : onJob(data.jobUpdated)),
        // An array: the server refused the subscription (e.g. NOT_FOUND); else the socket gave up.
        error: (error) =>
          onError(
            Array.isArray(error)
              ? error[0]?.message ?? "The service refused to follow this job."
              : "Live updates stopped: the connection to the service was lost. Reload to see the latest state.",
          ),
        complete: () => {},
      },
    );
  }

  /** Every change of any of the caller's jobs (the history keeps itself current with this). */
  watchJobs(onJob) {
    return this.client.subscribe(
      { query: `subscription Jobs { jobsUpdated { ...JobFields } } ${JOB_FRAGMENT}` },
      { next: ({ data }) => data && onJob(data.jobsUpdated), error: () => {}, complete: () => {} },
    );
  }
}
