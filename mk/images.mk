# The container images (docs/images.md): the Dockerfile's operator, trainer and server
# targets on a local Debian base image (scripts/build-base-image.sh), vLLM's CPU build.
# IMAGES_EXTRA_CA names a CA bundle for a TLS-intercepting proxy (off when empty).
IMAGES_EXTRA_CA ?=
IMAGES_ACCELERATOR ?= cpu

TEST_PREREQS += images-prereqs

.PHONY: images images-prereqs

# Debian's docker.io (dockerd 20.10, containerd, runc) and debootstrap. Elsewhere, or
# without apt, one line says so and the image tests skip.
images-prereqs:
	@if command -v dockerd >/dev/null && command -v debootstrap >/dev/null; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "images-prereqs: skipped (no apt-get); install docker and debootstrap"; exit 0; \
	fi; \
	sudo=""; [[ $$(id -u) -eq 0 ]] || sudo="sudo"; \
	echo "images-prereqs: installing docker.io and debootstrap"; \
	$$sudo apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq docker.io debootstrap

images:
	ICX_EXTRA_CA="$(IMAGES_EXTRA_CA)" ICX_ACCELERATOR="$(IMAGES_ACCELERATOR)" \
	  scripts/build-images.sh
