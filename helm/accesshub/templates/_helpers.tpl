{{/* vim: set filetype=mustache: */}}

{{/* Chart name, truncated to the 63 characters DNS names allow. */}}
{{- define "accesshub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: <release>-<chart>, or <release> when it already contains the chart name. */}}
{{- define "accesshub.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "accesshub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The services: values key -> service name (= binary name in /usr/local/bin = OTEL_SERVICE_NAME).
*/}}
{{- define "accesshub.serviceNames" -}}
bookingIngest: booking-ingest
admin: accesshub-admin
cloudpassWorker: cloudpass-worker
dormakabaWorker: dormakaba-worker
ipassanWorker: ipassan-worker
tapkeyWorker: tapkey-worker
reconciler: reconciler
{{- end -}}

{{/*
Component of a service (app.kubernetes.io/component label and object-name suffix): the service
name without the "accesshub-" prefix, so accesshub-admin's objects are <fullname>-admin rather
than <fullname>-accesshub-admin. Call with the service name.
*/}}
{{- define "accesshub.component" -}}
{{- trimPrefix "accesshub-" . -}}
{{- end -}}

{{/* Name of the admin API's Service (<fullname>-admin). */}}
{{- define "accesshub.adminServiceName" -}}
{{- include "accesshub.componentFullname" (dict "root" . "component" "admin") -}}
{{- end -}}

{{/* Base URL of the admin API inside the cluster, as accessctl expects it (ACCESSHUB_API_URL). */}}
{{- define "accesshub.adminApiUrl" -}}
{{- printf "http://%s:%v/admin/v1" (include "accesshub.adminServiceName" .) .Values.adminService.port -}}
{{- end -}}

{{/*
Probes of a service container: the global probes.liveness / probes.readiness timings with the
service's own services.<svc>.probes on top. Call with (dict "root" $ "svc" <service values>
"kind" "liveness"|"readiness").
*/}}
{{- define "accesshub.probeTimings" -}}
{{- $own := index (default (dict) .svc.probes) .kind | default (dict) -}}
{{- toYaml (merge (deepCopy $own) (index .root.Values.probes .kind)) -}}
{{- end -}}

{{/* Standard labels on every object. */}}
{{- define "accesshub.labels" -}}
helm.sh/chart: {{ include "accesshub.chart" . }}
{{ include "accesshub.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: accesshub
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "accesshub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "accesshub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component. Call with (dict "root" $ "component" "booking-ingest"). */}}
{{- define "accesshub.componentLabels" -}}
{{ include "accesshub.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "accesshub.componentSelectorLabels" -}}
{{ include "accesshub.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Name of a component's objects: <fullname>-<component>. */}}
{{- define "accesshub.componentFullname" -}}
{{- printf "%s-%s" (include "accesshub.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "accesshub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "accesshub.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference. Call with (dict "root" $ "image" <per-service override map or nil>). */}}
{{- define "accesshub.image" -}}
{{- $img := merge (deepCopy (default (dict) .image)) .root.Values.image -}}
{{- $tag := default .root.Chart.AppVersion $img.tag -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "accesshub.imagePullPolicy" -}}
{{- $img := merge (deepCopy (default (dict) .image)) .root.Values.image -}}
{{- $img.pullPolicy -}}
{{- end -}}

{{/*
Key of the Secret holding the migrations Job's DATABASE_URL: a role with DDL rights
(migrations.databaseUrlKey with an existing Secret, MIGRATIONS_DATABASE_URL when
database.migrationsUrl is set), else the services' DATABASE_URL.
*/}}
{{- define "accesshub.migrationsUrlKey" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.migrations.databaseUrlKey -}}
{{- else if .Values.database.migrationsUrl -}}
MIGRATIONS_DATABASE_URL
{{- else -}}
DATABASE_URL
{{- end -}}
{{- end -}}

{{/* Secret holding DATABASE_URL, ACCESSHUB_ENCRYPTION_KEY, ACCESSHUB_ADMIN_TOKEN. */}}
{{- define "accesshub.secretName" -}}
{{- default (include "accesshub.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Secret holding the NATS credentials: one key per NATS user (password, or <user>.creds). */}}
{{- define "accesshub.natsSecretName" -}}
{{- default (printf "%s-nats" (include "accesshub.fullname" .)) .Values.nats.auth.existingSecret -}}
{{- end -}}

{{/*
NATS users the chart gives credentials to: every enabled service (user = service name, as in
deploy/nats/permissions.yaml) plus accessctl-dlq, accessctl's DLQ role, and accesshub-streams,
the migrations Job's identity (`accessctl streams apply`).
*/}}
{{- define "accesshub.natsUsers" -}}
{{- $users := list "accessctl-dlq" "accesshub-streams" -}}
{{- range $key, $service := include "accesshub.serviceNames" . | fromYaml -}}
{{- if (index $.Values.services $key).enabled -}}
{{- $users = append $users $service -}}
{{- end -}}
{{- end -}}
{{- toYaml (sortAlpha $users) -}}
{{- end -}}

{{/*
NATS identity env of one container. Call with (dict "root" $ "user" <NATS user> "prefix" ""|"ACCESSCTL_").
*/}}
{{- define "accesshub.natsIdentityEnv" -}}
{{- $root := .root -}}
{{- if eq $root.Values.nats.auth.mode "userPassword" }}
- name: {{ .prefix }}NATS_USER
  value: {{ .user | quote }}
- name: {{ .prefix }}NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "accesshub.natsSecretName" $root }}
      key: {{ .user }}
{{- end }}
{{- end -}}

{{- define "accesshub.natsCredsDir" -}}/etc/accesshub/nats{{- end -}}

{{/* Where nats.tls's Secrets are mounted (ca.crt, tls.crt, tls.key). */}}
{{- define "accesshub.natsTlsDir" -}}/etc/accesshub/nats-tls{{- end -}}

{{/* Whether nats.tls mounts anything. */}}
{{- define "accesshub.natsTlsMounted" -}}
{{- if or .Values.nats.tls.caSecret .Values.nats.tls.clientCertSecret }}true{{ end -}}
{{- end -}}

{{/*
Data of the chart-managed Secret (stringData), shared by the Secret and the migrations hook
Secret. Fail-fast: a render without the settings the services cannot run without stops here,
naming the value (the services themselves refuse to start without them, in production mode).
With secrets.existingSecret none of this renders: that Secret must hold the keys.
*/}}
{{- define "accesshub.secretData" -}}
DATABASE_URL: {{ required "database.url is required (or set secrets.existingSecret to a Secret holding DATABASE_URL, ACCESSHUB_ENCRYPTION_KEY and ACCESSHUB_ADMIN_TOKEN)" .Values.database.url | quote }}
ACCESSHUB_ENCRYPTION_KEY: {{ required "secrets.encryptionKey is required (openssl rand -base64 32; or secrets.existingSecret)" .Values.secrets.encryptionKey | quote }}
{{- if .Values.services.admin.enabled }}
ACCESSHUB_ADMIN_TOKEN: {{ required "secrets.adminToken is required while services.admin is enabled (or secrets.existingSecret)" .Values.secrets.adminToken | quote }}
{{- else }}
ACCESSHUB_ADMIN_TOKEN: {{ .Values.secrets.adminToken | quote }}
{{- end }}
{{- with .Values.database.migrationsUrl }}
MIGRATIONS_DATABASE_URL: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Non-secret configuration shared by every service (ConfigMap data, and inline env in the hook Job). */}}
{{- define "accesshub.configData" -}}
NATS_URL: {{ .Values.nats.url | quote }}
ACCESSHUB_HTTP_ADDR: "0.0.0.0:8080"
ACCESSHUB_STREAM_REPLICAS: {{ .Values.nats.streamReplicas | toString | quote }}
ACCESSHUB_LOG_FORMAT: {{ .Values.config.logFormat | quote }}
RUST_LOG: {{ .Values.config.rustLog | quote }}
ACCESSHUB_EGRESS_ALLOW: {{ join "," (.Values.config.egressAllow | default list) | quote }}
ACCESSHUB_RETENTION_DAYS: {{ .Values.config.retention.days | toString | quote }}
ACCESSHUB_AUDIT_RETENTION_DAYS: {{ .Values.config.retention.auditDays | toString | quote }}
{{- with .Values.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- with .Values.otel.protocol }}
OTEL_EXPORTER_OTLP_PROTOCOL: {{ . | quote }}
{{- end }}
{{- range $k, $v := .Values.config.extra }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/*
Environment of one container (besides envFrom the ConfigMap).
Call with (dict "root" $ "component" "booking-ingest" "svc" <service values or empty dict> "secretName" <name>
"withNats" <bool> ["databaseUrlKey" <Secret key of DATABASE_URL, default DATABASE_URL>] ["service" <OTEL_SERVICE_NAME, default: component>] ["workloadAttr" "k8s.job.name=..."]
["adminToken" <bool>: ACCESSHUB_ADMIN_TOKEN, the admin API's bootstrap token (accesshub-admin only)]
["accessctlApi" <bool>: ACCESSHUB_API_URL + ACCESSHUB_TOKEN, accessctl's admin API client]
["dlqRole" <bool>: ACCESSCTL_NATS_USER/PASSWORD, accessctl's DLQ role]).
*/}}
{{- define "accesshub.env" -}}
{{- $root := .root -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_SERVICE_NAME
  value: {{ default .component .service | quote }}
{{- $attrs := list "service.namespace=accesshub" (printf "service.version=%s" $root.Chart.AppVersion) "k8s.namespace.name=$(POD_NAMESPACE)" "k8s.pod.name=$(POD_NAME)" "k8s.node.name=$(NODE_NAME)" (default (printf "k8s.deployment.name=%s" (include "accesshub.componentFullname" .)) .workloadAttr) }}
{{- range $k, $v := $root.Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%v" $k $v) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- with .svc.rustLog }}
- name: RUST_LOG
  value: {{ . | quote }}
{{- end }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ default "DATABASE_URL" .databaseUrlKey }}
- name: ACCESSHUB_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: ACCESSHUB_ENCRYPTION_KEY
{{- if .adminToken }}
- name: ACCESSHUB_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: ACCESSHUB_ADMIN_TOKEN
{{- end }}
{{- if .accessctlApi }}
- name: ACCESSHUB_API_URL
  value: {{ include "accesshub.adminApiUrl" $root | quote }}
- name: ACCESSHUB_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: ACCESSHUB_ADMIN_TOKEN
{{- end }}
{{- if .withNats }}
{{- /* Each service is the NATS user of its name, with a private reply inbox. */}}
{{- if ne $root.Values.nats.auth.mode "none" }}
- name: NATS_INBOX_PREFIX
  value: {{ printf "_INBOX.%s" .service | quote }}
{{- end }}
{{- include "accesshub.natsIdentityEnv" (dict "root" $root "user" .service "prefix" "") }}
{{- if eq $root.Values.nats.auth.mode "creds" }}
- name: NATS_CREDS
  value: {{ printf "%s/nats.creds" (include "accesshub.natsCredsDir" $root) | quote }}
{{- end }}
{{- if .dlqRole }}
{{- include "accesshub.natsIdentityEnv" (dict "root" $root "user" "accessctl-dlq" "prefix" "ACCESSCTL_") }}
{{- end }}
{{- if $root.Values.nats.tls.caSecret }}
- name: ACCESSHUB_NATS_CA
  value: {{ printf "%s/ca.crt" (include "accesshub.natsTlsDir" $root) | quote }}
{{- end }}
{{- if $root.Values.nats.tls.clientCertSecret }}
- name: ACCESSHUB_NATS_CLIENT_CERT
  value: {{ printf "%s/tls.crt" (include "accesshub.natsTlsDir" $root) | quote }}
- name: ACCESSHUB_NATS_CLIENT_KEY
  value: {{ printf "%s/tls.key" (include "accesshub.natsTlsDir" $root) | quote }}
{{- end }}
{{- end }}
{{- with .svc.natsIngest }}
- name: ACCESSHUB_NATS_INGEST
  value: {{ .enabled | toString | quote }}
{{- end }}
{{- with .svc.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod-level scheduling fields. Call with (dict "root" $ "svc" <service values>). */}}
{{- define "accesshub.podScheduling" -}}
{{- $root := .root -}}
{{- with (default $root.Values.nodeSelector .svc.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.tolerations .svc.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.affinity .svc.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}
