/* Passkey ceremonies (WebAuthn) for the second-factor pages. Loaded only there.
 *
 * <form data-passkey="create|get" data-passkey-options="JSON from the server">: on submit,
 * asks the browser to create (register) or use (sign in with) a passkey with those options,
 * puts the browser's answer as JSON into the form's hidden "credential" field, and submits.
 * The server checks everything; this file only carries the answer. Without JavaScript or
 * WebAuthn the form's .passkey-unsupported note is shown instead, and codes still work.
 */
(function () {
  "use strict";

  function toBytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) base64 += "=";
    var text = atob(base64);
    var bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withBytes(list) {
    return (list || []).map(function (descriptor) {
      var copy = Object.assign({}, descriptor);
      copy.id = toBytes(descriptor.id);
      return copy;
    });
  }

  function publicKeyOptions(kind, options) {
    var publicKey = Object.assign({}, options);
    publicKey.challenge = toBytes(options.challenge);
    if (kind === "create") {
      publicKey.user = Object.assign({}, options.user, { id: toBytes(options.user.id) });
      publicKey.excludeCredentials = withBytes(options.excludeCredentials);
    } else {
      publicKey.allowCredentials = withBytes(options.allowCredentials);
    }
    return publicKey;
  }

  function answerJSON(credential) {
    if (typeof credential.toJSON === "function") return JSON.stringify(credential.toJSON());
    var response = credential.response;
    var answer = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toBase64url(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      answer.response.attestationObject = toBase64url(response.attestationObject);
      if (typeof response.getTransports === "function") answer.response.transports = response.getTransports();
    } else {
      answer.response.authenticatorData = toBase64url(response.authenticatorData);
      answer.response.signature = toBase64url(response.signature);
      if (response.userHandle) answer.response.userHandle = toBase64url(response.userHandle);
    }
    return JSON.stringify(answer);
  }

  function showProblem(form, text) {
    var box = form.querySelector(".passkey-problem");
    if (!box) {
      box = document.createElement("div");
      box.className = "form-errors passkey-problem";
      box.setAttribute("role", "alert");
      form.insertBefore(box, form.firstChild);
    }
    box.textContent = text;
  }

  function setUp(form) {
    var kind = form.getAttribute("data-passkey");
    var button = form.querySelector('button[type="submit"]');
    if (!window.PublicKeyCredential || !navigator.credentials || !window.isSecureContext) {
      var note = form.querySelector(".passkey-unsupported");
      if (note) note.hidden = false;
      if (button) button.disabled = true;
      return;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var name = form.querySelector('input[name="name"]');
      if (name && !name.value.trim()) {
        showProblem(form, "Give the passkey a name first.");
        name.focus();
        return;
      }
      var options;
      try {
        options = publicKeyOptions(kind, JSON.parse(form.getAttribute("data-passkey-options")));
      } catch (e) {
        showProblem(form, "This page is out of date. Reload it and try again.");
        return;
      }
      if (button) button.disabled = true;
      var ceremony = kind === "create"
        ? navigator.credentials.create({ publicKey: options })
        : navigator.credentials.get({ publicKey: options });
      ceremony.then(function (credential) {
        form.querySelector('input[name="credential"]').value = answerJSON(credential);
        form.submit();
      }, function (error) {
        if (button) button.disabled = false;
        showProblem(form, error && error.name === "InvalidStateError"
          ? "This passkey is registered already."
          : "No passkey was used (cancelled, timed out, or not allowed). Try again, or use a code.");
      });
    });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-passkey]"), setUp);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
