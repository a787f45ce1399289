// Signing in. `restoration dev`: the dev identity, asked from the dev server (nothing to type).
// Elsewhere: Auth0 Universal Login (authorization code + PKCE) with Auth0's own SPA SDK. Tokens
// live in this module's memory only: never in the URL, localStorage or a cookie of ours.

const DEV_TOKEN_PATH = "/web/dev-token";
// Ask for a new dev token this long before the current one expires.
const DEV_TOKEN_MARGIN_MS = 60_000;
// On load the SDK asks Auth0 in a hidden frame whether the person is still signed in there (tokens
// are in memory only, so a reload has none); a browser that blocks the frame's cookies never
// answers, and the page shows "Sign in" after this long instead of after the SDK's 60 s.
const SILENT_SIGN_IN_SECONDS = 10;

export class SignInError extends Error {}

/** Resolves to a session `{label, getToken(), signOut?()}`, or to `{signIn()}` when the person
 *  still has to sign in (Auth0), or throws SignInError with a message for the person. */
export async function startSession(config) {
  if (config.signIn === "dev") return devSession();
  return auth0Session(config.auth0 ?? {});
}

async function devSession() {
  let token = null;
  let expiresAt = 0;
  async function getToken() {
    if (token && Date.now() < expiresAt - DEV_TOKEN_MARGIN_MS) return token;
    const response = await fetch(DEV_TOKEN_PATH, { method: "POST", cache: "no-store" });
    if (!response.ok) throw new SignInError("The dev server did not hand out a dev token.");
    ({ token } = await response.json());
    expiresAt = jwtExpiry(token);
    return token;
  }
  await getToken();
  return { label: "Signed in with the dev identity", getToken };
}

function jwtExpiry(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return payload.exp * 1000;
  } catch {
    return 0;
  }
}

async function auth0Session({ domain, clientId, audience }) {
  if (!clientId) {
    throw new SignInError(
      "Sign-in is not set up on this server: AUTH0_CLIENT_ID is unset. Its operator sets it to the " +
        "Client ID of an Auth0 Single Page Application (see the README, \"Web page\").",
    );
  }
  if (!domain || !audience) throw new SignInError("Sign-in is not set up on this server (AUTH0_DOMAIN, AUTH0_AUDIENCE).");
  // Loaded only here: `restoration dev` never needs the SDK.
  const { createAuth0Client } = await import("./vendor/auth0-spa-js/auth0-spa-js.production.esm.js");
  const client = await createAuth0Client({
    domain,
    clientId,
    cacheLocation: "memory",
    authorizeTimeoutInSeconds: SILENT_SIGN_IN_SECONDS,
    authorizationParams: { audience, redirect_uri: `${location.origin}/` },
  });
  const query = new URLSearchParams(location.search);
  if (query.has("code") && query.has("state")) {
    try {
      await client.handleRedirectCallback();
    } catch (error) {
      throw new SignInError(`Sign-in failed: ${error.error_description ?? error.message}`);
    } finally {
      history.replaceState(null, "", "/"); // the code is single-use; keep it out of the address bar
    }
  }
  if (!(await client.isAuthenticated())) {
    return { signIn: () => client.loginWithRedirect() };
  }
  const user = await client.getUser();
  return {
    label: `Signed in as ${user?.email ?? user?.name ?? "you"}`,
    getToken: () => client.getTokenSilently(),
    signOut: () => client.logout({ logoutParams: { returnTo: `${location.origin}/` } }),
  };
}
