{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "berth.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "berth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "berth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "berth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "berth.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "berth.s3" -}}
{{- eq .Values.storage.type "s3" -}}
{{- end }}

{{- define "berth.s3SecretName" -}}
{{- .Values.storage.s3.existingSecret | default (printf "%s-s3" (include "berth.fullname" .)) }}
{{- end }}

{{- define "berth.authSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "berth.fullname" .)) }}
{{- end }}

{{/* berth.yaml: storage, auth, gc, log and metrics from values, then `config` merged over it. */}}
{{/* Secrets never go into the ConfigMap: `config` (merged into berth.yaml) may not carry them. */}}
{{- define "berth.noSecretsInConfig" -}}
{{- $c := .Values.config | default dict }}
{{- range $i, $w := ($c.webhooks | default list) }}
{{- if and (kindIs "map" $w) (hasKey $w "secret") }}
{{- fail (printf "config.webhooks[%d].secret would be stored in the ConfigMap: put webhooks with secrets in a Secret (key \"webhooks\": JSON list) and set webhooks.existingSecret" $i) }}
{{- end }}
{{- end }}
{{- with $c.auth }}
{{- if or (hasKey . "users") (hasKey . "oidc") }}
{{- fail "config.auth.users / config.auth.oidc would be stored in the ConfigMap: put them in a Secret (keys \"users\", \"oidc\") and set auth.existingSecret" }}
{{- end }}
{{- end }}
{{- with $c.storage }}{{ with .s3 }}
{{- if or (hasKey . "accessKeyId") (hasKey . "secretAccessKey") }}
{{- fail "config.storage.s3 credentials would be stored in the ConfigMap: set storage.s3.existingSecret (keys accessKeyId, secretAccessKey)" }}
{{- end }}
{{- end }}{{ end }}
{{- end }}

{{- define "berth.config" -}}
{{- include "berth.noSecretsInConfig" . }}
{{- $storage := dict "delete" .Values.storage.delete }}
{{- if eq .Values.storage.type "s3" }}
{{- $s3 := dict "bucket" (required "storage.s3.bucket is required for S3 storage" .Values.storage.s3.bucket) "region" .Values.storage.s3.region "forcePathStyle" .Values.storage.s3.forcePathStyle "blobGet" .Values.storage.s3.blobGet }}
{{- if .Values.storage.s3.endpoint }}{{ $_ := set $s3 "endpoint" .Values.storage.s3.endpoint }}{{ end }}
{{- if .Values.storage.s3.prefix }}{{ $_ := set $s3 "prefix" .Values.storage.s3.prefix }}{{ end }}
{{- $_ := set $storage "s3" $s3 }}
{{- else if eq .Values.storage.type "filesystem" }}
{{- $_ := set $storage "filesystem" (dict "root" "/var/lib/berth") }}
{{- else }}
{{- fail "storage.type must be filesystem or s3" }}
{{- end }}
{{- $auth := dict "mode" .Values.auth.mode }}
{{- if and (eq .Values.auth.mode "token") (not (or .Values.auth.existingSecret .Values.auth.robotsOnly)) }}
{{- fail "auth.mode=token has no way to log in: set auth.existingSecret (a Secret with key \"users\": JSON [{name, passwordHash, groups}], and/or key \"oidc\" with auth.oidcFromSecret=true), or auth.robotsOnly=true if only robot tokens (berth token create) log in" }}
{{- end }}
{{- if and .Values.auth.oidcFromSecret (not .Values.auth.existingSecret) }}
{{- fail "auth.oidcFromSecret needs auth.existingSecret (the Secret with key \"oidc\")" }}
{{- end }}
{{- if eq .Values.auth.mode "htpasswd" }}{{ $_ := set $auth "htpasswd" (dict "path" "/etc/berth/auth/htpasswd") }}{{ end }}
{{- if .Values.auth.acl }}{{ $_ := set $auth "acl" .Values.auth.acl }}{{ end }}
{{- $http := dict "addr" ":5000" }}
{{- /* Behind the ingress, clients reach berth by the ingress host: token realms and Location URLs must name it. */}}
{{- if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- $_ := set $http "publicUrl" (printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) $host) }}
{{- end }}
{{- if .Values.publicUrl }}{{ $_ := set $http "publicUrl" .Values.publicUrl }}{{ end }}
{{- if .Values.trustedProxies }}{{ $_ := set $http "trustedProxies" .Values.trustedProxies }}{{ end }}
{{- if .Values.debug.enabled }}{{ $_ := set $http "debug" (dict "addr" (printf ":%d" (int .Values.debug.port))) }}{{ end }}
{{- if .Values.tls.enabled }}
{{- $_ := required "tls.existingSecret (a kubernetes.io/tls Secret) is required with tls.enabled" .Values.tls.existingSecret }}
{{- $_ := set $http "tls" (dict "certificate" "/etc/berth-tls/tls.crt" "key" "/etc/berth-tls/tls.key") }}
{{- end }}
{{- $base := dict "http" $http "storage" $storage "auth" $auth "audit" (dict "enabled" .Values.audit.enabled "output" "stdout") "log" .Values.log "metrics" (dict "enabled" .Values.metrics.enabled) "gc" (dict "enabled" .Values.gc.enabled "interval" .Values.gc.interval "grace" .Values.gc.grace "deleteUntagged" .Values.gc.deleteUntagged) }}
{{- toYaml (mustMergeOverwrite $base (deepCopy .Values.config)) }}
{{- end }}

{{/* Volumes and mounts shared by the Deployment and the GC CronJob. */}}
{{- define "berth.volumes" -}}
- name: config
  configMap:
    name: {{ include "berth.fullname" . }}
- name: tmp
  emptyDir: {}
{{- if eq .Values.storage.type "filesystem" }}
- name: data
  persistentVolumeClaim:
    claimName: {{ .Values.storage.filesystem.persistence.existingClaim | default (include "berth.fullname" .) }}
{{- end }}
{{- if eq .Values.auth.mode "htpasswd" }}
- name: auth
  secret:
    secretName: {{ include "berth.authSecretName" . }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{- define "berth.volumeMounts" -}}
- name: config
  mountPath: /etc/berth
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if eq .Values.storage.type "filesystem" }}
- name: data
  mountPath: /var/lib/berth
{{- end }}
{{- if eq .Values.auth.mode "htpasswd" }}
- name: auth
  mountPath: /etc/berth/auth
  readOnly: true
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/berth-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "berth.env" -}}
{{- if eq .Values.storage.type "s3" }}
- name: BERTH_STORAGE_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "berth.s3SecretName" . }}
      key: accessKeyId
- name: BERTH_STORAGE_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "berth.s3SecretName" . }}
      key: secretAccessKey
{{- end }}
{{- if and (eq .Values.auth.mode "token") .Values.auth.existingSecret }}
- name: BERTH_AUTH_USERS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: users
      optional: {{ .Values.auth.oidcFromSecret }}
{{- end }}
{{- if and (eq .Values.auth.mode "token") .Values.auth.oidcFromSecret }}
- name: BERTH_AUTH_OIDC
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: oidc
{{- end }}
{{- if .Values.webhooks.existingSecret }}
- name: BERTH_WEBHOOKS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.webhooks.existingSecret }}
      key: webhooks
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
