"""The Resource Guard endpoints under ``/api/v1/resource-guards/`` (SPEC 5)."""

from portal.api import api_router

from .api import ResourceGuardViewSet

router = api_router()
router.register("resource-guards", ResourceGuardViewSet, basename="resource-guard")

urlpatterns = router.urls
