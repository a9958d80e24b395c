"""How `kubeflow_runner.py submit|schedule` reach the Kubeflow Pipelines API: its endpoint, the
namespace runs live in, and credentials, as kfp 2.13's Client takes them; refusals explained.

A multi-user Kubeflow (the usual install) keeps each user's experiments and runs in their profile
namespace, behind a login. What its API server (kubeflow/pipelines backend/src/apiserver, 2.0.0
to 2.17.0: auth/, resource/resource_manager.go IsAuthorized) accepts: an identity header that
Kubeflow's gateway sets after checking the browser session (oauth2-proxy from Kubeflow 1.9,
oidc-authservice before), or a bearer token it reviews with Kubernetes (TokenReview, audience
`pipelines.kubeflow.org`); then a SubjectAccessReview in the namespace. No identity: 401; no
access to the namespace: 403; an experiment without a namespace: 400. Runs and recurring runs
belong to their experiment's namespace, so the namespace only goes with the experiment.

Credentials (never printed), the first one found of:
  --token, $KF_PIPELINES_TOKEN        a bearer token, e.g. `kubectl create token SA -n NS
                                      --audience pipelines.kubeflow.org`, or an OIDC id token
  --token-file, $KF_PIPELINES_SA_TOKEN_PATH, else /var/run/secrets/kubeflow/pipelines/token
                                      when it exists: a service account token the kubelet keeps
                                      fresh (the projected volume KFP documents for pods)
plus, alone or beside a token:
  --cookies, $KF_PIPELINES_COOKIES    the session cookie from a logged-in browser, as a Cookie
                                      header: "oauth2_proxy_kubeflow=..." (Kubeflow 1.9+) or
                                      "authservice_session=..." (up to 1.8)
--namespace / $KF_PIPELINES_NAMESPACE names the profile namespace (in a pod, its own namespace
is the default, as kfp.Client does); --endpoint / $KF_PIPELINES_ENDPOINT the API.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import urllib.parse

ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"  # kfp.Client's own
NAMESPACE_ENV = "KF_PIPELINES_NAMESPACE"
TOKEN_ENV = "KF_PIPELINES_TOKEN"
TOKEN_FILE_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp.client.KF_PIPELINES_SA_TOKEN_ENV
COOKIES_ENV = "KF_PIPELINES_COOKIES"
POD_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
HEALTHZ = "/apis/v2beta1/healthz"


class KubeflowApiError(RuntimeError):
    """The API could not be reached or refused the request; the message says what to try."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """token: a bearer token; token_file: a file holding one, re-read on every request; cookies: a
    Cookie header. sources: what each came from, for messages (names, never values)."""

    token: str | None = dataclasses.field(default=None, repr=False)
    token_file: str | None = None
    cookies: str | None = dataclasses.field(default=None, repr=False)
    sources: tuple[str, ...] = ()

    def describe(self) -> str:
        return " and ".join(self.sources) or "no credentials"

    def client_kwargs(self) -> dict:
        """kfp.Client's keyword arguments for these credentials."""
        from kfp import client

        kwargs: dict = {"cookies": self.cookies}
        if self.token:
            kwargs["existing_token"] = self.token
        elif self.token_file:
            kwargs["credentials"] = client.ServiceAccountTokenVolumeCredentials(self.token_file)
        return kwargs

    def configure(self, config) -> None:
        """Sets the token on a kfp_server_api Configuration, as kfp.Client does."""
        from kfp import client

        if self.token or self.token_file:
            config.api_key_prefix["authorization"] = "Bearer"
        if self.token:
            config.api_key["authorization"] = self.token
        elif self.token_file:  # the hook runs only when a key is there, then replaces it
            config.api_key["authorization"] = "placeholder"
            file = client.ServiceAccountTokenVolumeCredentials(self.token_file)
            config.refresh_api_key_hook = file.refresh_api_key_hook


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "the Kubeflow Pipelines API (values come from the flags, else the environment)"
    )
    group.add_argument(
        "--endpoint",
        default=os.environ.get(ENDPOINT_ENV),
        help=f"the API (${ENDPOINT_ENV}), e.g. https://KUBEFLOW_HOST/pipeline behind "
        "Kubeflow's login, http://localhost:8080/pipeline through a port-forward of its gateway, "
        "or http://ml-pipeline.kubeflow:8888 from a pod in the cluster",
    )
    group.add_argument(
        "--namespace",
        default=os.environ.get(NAMESPACE_ENV),
        help=f"the profile namespace where the experiment and its runs live (${NAMESPACE_ENV}; "
        "needed on a multi-user Kubeflow; in a pod: its own namespace)",
    )
    tokens = group.add_mutually_exclusive_group()
    tokens.add_argument(
        "--token",
        help=f"a bearer token (${TOKEN_ENV}, which keeps it out of the process list), e.g. "
        "`kubectl create token default-editor -n NAMESPACE --audience pipelines.kubeflow.org`",
    )
    tokens.add_argument(
        "--token-file",
        help=f"a file holding a bearer token, re-read on each request (${TOKEN_FILE_ENV}; "
        "default: KFP's projected service account token in a pod, when present)",
    )
    group.add_argument(
        "--cookies",
        help=f"the session cookie of a logged-in browser, as a Cookie header (${COOKIES_ENV}): "
        "'oauth2_proxy_kubeflow=...' (Kubeflow 1.9+) or 'authservice_session=...'",
    )


def _cookie_names(cookies: str, source: str) -> list[str]:
    names = []
    for part in filter(None, (p.strip() for p in cookies.split(";"))):
        name, equals, _ = part.partition("=")
        if not (equals and re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name)):
            raise ValueError(
                f"{source}: expected a Cookie header, NAME=VALUE[; NAME=VALUE...] "
                "(the value is not shown here)"
            )
        names.append(name)
    if not names:
        raise ValueError(f"{source} is empty")
    return names


def credentials(args: argparse.Namespace) -> Credentials:
    """The credentials the flags and the environment give; ValueError names a bad one."""
    from kfp import client

    token, token_file, sources = None, None, []
    env_token, env_file = os.environ.get(TOKEN_ENV), os.environ.get(TOKEN_FILE_ENV)
    if args.token:
        token, sources = args.token.strip(), ["the bearer token from --token"]
    elif args.token_file:
        token_file, where = args.token_file, "--token-file"
    elif env_token:
        token, sources = env_token.strip(), [f"the bearer token from ${TOKEN_ENV}"]
    elif env_file:
        token_file, where = env_file, f"${TOKEN_FILE_ENV}"
    elif os.path.exists(client.KF_PIPELINES_SA_TOKEN_PATH):  # a pod with KFP's projected token
        token_file, where = client.KF_PIPELINES_SA_TOKEN_PATH, "the pod's projected volume"
    if token_file:
        if not os.path.isfile(token_file):
            raise ValueError(f"{where}: no token file at {token_file}")
        sources = [f"the service account token in {token_file} ({where})"]
    cookies, source = (args.cookies, "--cookies") if args.cookies else (None, None)
    if not cookies and os.environ.get(COOKIES_ENV):
        cookies, source = os.environ[COOKIES_ENV], f"${COOKIES_ENV}"
    if cookies:
        names = ", ".join(_cookie_names(cookies, source))
        sources.append(f"the cookies {names} from {source}")
    return Credentials(token=token, token_file=token_file, cookies=cookies, sources=tuple(sources))


def normalized(endpoint: str) -> str:
    """The endpoint as kfp.Client uses it: https:// when no scheme is given, no trailing /."""
    endpoint = endpoint if endpoint.startswith("http") else f"https://{endpoint}"
    return endpoint.rstrip("/")


def _server_message(body) -> str:
    """The first line of what the server said: grpc-gateway's {"code", "message"} (older API
    servers: {"error"}), else the text of a gateway's page."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        parsed = json.loads(text)
        text = parsed.get("message") or parsed.get("error") or text
    except (ValueError, AttributeError):
        text = re.sub(r"<[^>]+>", " ", text)
    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    return line[:400] + ("..." if len(line) > 400 else "")


@dataclasses.dataclass
class Connection:
    """One Kubeflow Pipelines API as these settings reach it. namespace: None until known."""

    endpoint: str
    namespace: str | None
    credentials: Credentials
    multi_user: bool | None = None

    def client(self):
        """A kfp.Client for the endpoint, after one call that checks it answers as the API does
        (kfp.Client's own check retries a refusal for 25 s, then hides it)."""
        import kfp

        healthz = self._healthz()
        self.multi_user = bool(healthz.get("multi_user"))
        if self.multi_user and not self.namespace:
            if not os.path.exists(POD_NAMESPACE_FILE):
                raise KubeflowApiError(
                    f"the Kubeflow Pipelines at {self.endpoint} is multi-user: name the profile "
                    f"namespace to run in with --namespace or ${NAMESPACE_ENV}"
                )
            with open(POD_NAMESPACE_FILE) as f:
                self.namespace = f.read().strip()
        return kfp.Client(
            host=self.endpoint,
            # kfp.Client's "not given": it then asks healthz again and may write a context file.
            namespace=self.namespace or "kubeflow",
            **self.credentials.client_kwargs(),
        )

    def _healthz(self) -> dict:
        import kfp_server_api

        config = kfp_server_api.Configuration(host=self.endpoint)
        self.credentials.configure(config)
        api = kfp_server_api.HealthzServiceApi(
            kfp_server_api.ApiClient(config, cookie=self.credentials.cookies)
        )
        with self.explained():
            response = api.healthz_service_get_healthz_with_http_info(_preload_content=False)
        try:
            body = json.loads(response.data)
        except ValueError:
            body = None
        if isinstance(body, dict):
            return body
        page = urllib.parse.urljoin(self.endpoint + "/", response.geturl() or "")
        redirected = response.retries and response.retries.history
        raise KubeflowApiError(
            f"{self.endpoint}{HEALTHZ} answered with a web page ({page}), not the Kubeflow "
            "Pipelines API"
            + (
                f": a login page, so the gateway did not accept {self.credentials.describe()}. "
                + self._what_to_send()
                if redirected
                else ". Check --endpoint: behind Kubeflow's gateway it ends in /pipeline"
            )
        )

    def _what_to_send(self) -> str:
        return (
            "Send a bearer token (--token, or $KF_PIPELINES_TOKEN; in a pod --token-file), or a "
            "logged-in browser's session cookie (--cookies, or $KF_PIPELINES_COOKIES)."
        )

    def _refusal(self, status: int, reason: str, body) -> str:
        said = _server_message(body)
        sent = self.credentials.describe()
        where = f"namespace {self.namespace}" if self.namespace else "no namespace"
        text = f"the Kubeflow Pipelines API at {self.endpoint} answered {status} {reason}"
        text += f": {said}" if said else ""
        text += f" (sent: {sent}; {where})."
        if status == 401 and not self.credentials.sources:
            return f"{text} It needs to know who you are. {self._what_to_send()}"
        if status == 401:
            why = []
            if self.credentials.token or self.credentials.token_file:
                why.append(
                    "a token may have expired (`kubectl create token` makes one-hour tokens) or "
                    "be meant for another audience (the API reviews bearer tokens for "
                    "'pipelines.kubeflow.org')"
                )
            if self.credentials.cookies:
                why.append("a session cookie expires: log in again and copy it")
            why.append("or the gateway in front of the API wants another kind")
            return f"{text} {sent[0].upper()}{sent[1:]} was not accepted: {'; '.join(why)}."
        if status == 403:
            return (
                f"{text} The identity is known but may not use {where}: run in your own profile's "
                "namespace (--namespace), ask its owner to add you as a contributor, or for a "
                "service account bind it to the kubeflow-edit role there."
            )
        if status == 400 and "namespace" in said:
            return f"{text} Name your profile's namespace with --namespace or ${NAMESPACE_ENV}."
        return text

    @contextlib.contextmanager
    def explained(self):
        """Turns the API's refusals and connection errors into a KubeflowApiError that says which
        credential was sent and what to try, instead of kfp's and urllib3's tracebacks."""
        import kfp_server_api
        from urllib3.exceptions import HTTPError

        try:
            yield
        except kfp_server_api.ApiException as error:
            if not error.status:  # raised before an answer, e.g. a TLS failure
                raise KubeflowApiError(
                    f"cannot reach the Kubeflow Pipelines API at {self.endpoint}: {error.reason}"
                ) from None
            message = self._refusal(error.status, error.reason, error.body)
            raise KubeflowApiError(message) from None
        except HTTPError as error:
            cause = getattr(error, "reason", None) or error
            raise KubeflowApiError(
                f"cannot reach the Kubeflow Pipelines API at {self.endpoint}: "
                f"{type(cause).__name__}: {cause}. Check --endpoint"
            ) from None


def connection(args: argparse.Namespace) -> Connection:
    """The Connection the flags name; ValueError names a missing or malformed setting."""
    if not args.endpoint:
        raise ValueError(f"--endpoint (or ${ENDPOINT_ENV}) is required: the API's URL")
    return Connection(normalized(args.endpoint), args.namespace or None, credentials(args))
